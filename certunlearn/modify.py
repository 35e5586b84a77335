"""Certified unlearning of features and labels: replace rows' values instead of removing the rows.

Warnecke, Pirch, Wressnegger and Rieck (NDSS 2023) unlearn a *feature* (a sensitive column set to zero or
a constant in every row, or in some rows) or a *label* (noisy labels corrected) with one closed-form
second-order update; for strongly convex losses the update is certified in the framework of Guo et al.
(2020). This module does that for the convex models of :mod:`certunlearn.api`, with the same residual
bounds, ledger, budget and retraining as :func:`certunlearn.api.remove`.

Setting and update (sum convention, THEORY.md Sec. 1). The model holds ``w``, the minimiser of
``L_b(w; D) = sum_{i in D} l(w; z_i) + lambda n/2 ||w||^2 + <b, w>`` up to a residual
``g_prev = grad L_b(w; D)`` with ``||g_prev|| <= beta`` (the residual spent so far, training residual
included). :func:`modify` replaces the rows ``S`` (``m = |S|``, all retained) by ``z_i' = (x_i', y_i')``,
giving ``D'``. The number ``n`` of retained rows, hence the regulariser, and ``b`` do not change, so::

    grad L_b(w; D') = g_prev - Delta,   Delta = - sum_{i in S} (grad l(w; z_i') - grad l(w; z_i))
                                              = grad L(w; D) - grad L(w; D'),
    H' = grad^2 L(w; D')                 (Hessian on the MODIFIED retained rows, at w)
    w_new = w + u,  u = H'^{-1} Delta    (update="guo";  Warnecke et al. eq. for the second-order update)
    w_new = w + u,  u = -H'^{-1} grad L_b(w; D')        (update="gradient"; also corrects g_prev)

(Warnecke et al. write the Hessian of the training loss at ``w``; taking it on the modified rows makes the
step an exact Newton step on the modified objective, exact for squared loss, and gives the remainder below.)

Residual. Taylor's theorem with integral remainder on ``D'``::

    grad L_b(w + u; D') = grad L_b(w; D') + H' u + R(u),   R(u) = int_0^1 (H'(w + t u) - H'(w)) u dt,
    guo:       r_new = g_prev + (H' u - Delta) + R(u),   ||r_new|| <= beta + e + ||R(u)||,
    gradient:  r_new = (H' u + grad L_b(w; D')) + R(u),  ||r_new|| <= e + ||R(u)||,

with ``e`` the solve error of the *published* ``u`` (recomputed in float64 with Hessian-vector products,
plus a rounding margin). Since ``w_new`` is then the exact minimiser of ``L(.; D') + <b - r_new, .>``,
Guo et al.'s Thm. 3 gives the same (epsilon, delta) statement as for removal, with "retraining on ``D'``"
(the modified data) in place of "retraining without the removed rows": the neighbouring relation is
*replace-m* (``D`` and ``D'`` differ in the values of ``m`` rows).

Bounds on ``R(u)`` (proofs). ``H'(v) = sum_{i in D'} (x_i' x_i'^T) (x) A(x_i'^T v) + lambda n I``; the
regulariser cancels in the difference. With ``delta_i = x_i'^T u`` (scalar, or a K-vector for softmax)
and ``gamma`` the Lipschitz constant of the loss curvature ``A`` (:mod:`certunlearn.losses`),
``R(u) = sum_i x_i' (x) rho_i`` with ``rho_i = int_0^1 (A(z_i + t delta_i) - A(z_i)) delta_i dt``, so
``||rho_i|| <= int_0^1 gamma t ||delta_i||^2 dt = gamma/2 ||delta_i||^2`` (the integral gives the 1/2, as in
:mod:`certunlearn.removal`). Then:

* ``data-dependent``: ``R = X'^T P`` with the rows ``rho_i`` in ``P`` (retained rows of the modified matrix
  ``X'``), so ``||R|| <= ||X'||_2 ||P||_F <= gamma/2 ||X'||_2 sqrt(sum_{i in D'} ||delta_i||^4)``. The
  modified matrix is ``X' = X + E`` with ``E`` zero outside the rows ``S``, so by the triangle inequality
  ``||X'||_2 <= ||X||_2 + ||E||_2 <= N + ||E||_F`` for the model's proven bound ``N >= ||X||_2``, and also
  ``||X'||_2 <= ||X'||_F``; the bound kept is the smaller, with floating-point margins
  (:func:`modified_data_norm_bound`), O(nd) and never by power iteration. A retained submatrix has a
  spectral norm no larger than the whole matrix's, so the bound serves later removals too.
* ``worst-case``: ``||delta_i|| <= ||x_i'|| ||u|| <= rho ||u||`` with ``rho >= max ||x_i'||`` gives
  ``||R|| <= sum_i ||x_i'|| ||rho_i|| <= gamma/2 rho^3 n ||u||^2`` (no pass over the data). A priori
  (the modification analogue of Guo et al.'s Thm. 1): the loss curvature is positive semi-definite, so
  ``H' >= lambda n I`` and ``||u|| <= (||Delta|| + e) / (lambda n)``; per-example gradients are
  ``grad l(w; z) = x (x) l'(x^T w, y)`` with ``|l'| <= 1`` (logistic) or ``||p - e_y|| <= sqrt(2)``
  (softmax), so ``||grad l|| <= C = c_l rho`` and ``||Delta|| <= sum_{i in S} ||grad l(w; z_i) -
  grad l(w; z_i')|| <= 2 m C``, whence ``||R|| <= gamma/2 rho^3 n ((2 m C + e) / (lambda n))^2 =
  2 gamma rho^3 m^2 C^2 / (lambda^2 n)`` for an exact solve (:func:`worst_case_modification_bound`,
  reported as ``worst_case_apriori``; the certificate uses the smaller step-based form).
* ``exact``: ``||grad L_b(w_new; D')||`` computed directly in float64 (plus a rounding margin).

Squared loss has ``gamma = 0``: one step equals retraining on ``D'`` exactly.

The model returned holds the modified data (a new ``_Data``; the old model and its arrays are unchanged),
so later :func:`certunlearn.remove` / :func:`modify` calls and retrains use it; the curvature cache is
dropped. When the step would overflow the residual budget (or its solve did not converge) the model is
retrained on the modified data with fresh noise (``on_exhausted="retrain"``), or
:class:`certunlearn.api.BudgetExhaustedError` is raised (``"raise"``), as for removals.

References:
  Warnecke, Pirch, Wressnegger, Rieck. Machine Unlearning of Features and Labels. NDSS 2023,
  arXiv:2108.11577 (Sec. 4, second-order update; Sec. 5, certified unlearning).
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models.
  ICML 2020, arXiv:1911.03030 (Thm. 1, Cor. 1, Thm. 3).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from certunlearn import api, distributed, hessian, objective, removal, solvers
from certunlearn.losses import get_loss

Array = jax.Array

__all__ = [
    "GRADIENT_BOUNDS",
    "SOLVERS",
    "ModificationReport",
    "modification_step",
    "modification_terms",
    "modified_data_norm_bound",
    "modify",
    "relabel",
    "replace_feature",
    "training_data",
    "worst_case_modification_bound",
]

SOLVERS = ("auto", "cholesky", "cg")
#: ``c_l``: sup of ``||d l / d z||`` over predictors and labels (per-example gradient norm ``<= c_l ||x||``).
GRADIENT_BOUNDS = {"logistic": 1.0, "softmax": math.sqrt(2.0), "squared": math.inf}
_EPS64 = float(np.finfo(np.float64).eps)
_MIN_BUCKET = 8


@dataclasses.dataclass(frozen=True)
class ModificationReport:
    """What one call of :func:`modify` did.

    Attributes:
      indices: the original row indices modified.
      features_changed, labels_changed: whether ``X_new`` / ``y_new`` were given.
      residual_bound: the step's proven bound (added to ``residual_spent`` under Guo's accumulation; the
        whole residual for ``update="gradient"`` or ``bound="exact"``). After a retrain, the new training
        residual.
      residual_spent, residual_budget, epsilon: the model's state after the call.
      retrained: whether the modification was served by retraining on the modified data with fresh noise.
      solve_error: ``||H' u - Delta||`` (or ``||H' u + g'||``) of the step, float64, with rounding margin.
      remainder: the proven bound on ``||R(u)||`` (0 for ``bound="exact"``).
      exact_residual: ``||grad L_b(w_new; D')||`` plus its float64 rounding margin when computed
        (``bound="exact"``), else NaN.
      worst_case_apriori: the a-priori worst-case bound ``gamma/2 rho^3 n ((2 m C + e')/(lambda n))^2``
        (diagnostic; ``>= remainder`` of the worst-case bound).
      data_norm: the proven bound on ``||X'||_2`` used (NaN unless ``bound="data-dependent"``).
      solver: "cholesky" or "cg". solver_steps: solver iterations. converged: whether the solve converged.
      seconds: wall time of the modified data, the step and its certificate. retrain_seconds: of the
        retrain (0 if none).
    """

    indices: np.ndarray
    features_changed: bool
    labels_changed: bool
    residual_bound: float
    residual_spent: float
    residual_budget: float
    epsilon: float
    retrained: bool
    solve_error: float = math.nan
    remainder: float = math.nan
    exact_residual: float = math.nan
    worst_case_apriori: float = math.nan
    data_norm: float = math.nan
    solver: str = ""
    solver_steps: int = 0
    converged: bool = True
    seconds: float = 0.0
    retrain_seconds: float = 0.0


# ----------------------------------------------------------------------------------------------------
# Pure, jittable building blocks.


def _norm(v):
    return jnp.sqrt(jnp.sum(v * v))


def _modification_rhs(params, X_old, y_old, X_new, y_new, keep, rows, row_weights, perturbation, l2_reg, *,
                      loss, update):
    """``Delta`` (guo) from the modified rows alone, O(m d); or ``-grad L_b(w; D')`` (gradient)."""
    if update == "guo":
        zero = jnp.zeros_like(params)
        old = objective.gradient(params, X_old[rows], y_old[rows], row_weights, zero, loss=loss, l2_reg=0.0)
        new = objective.gradient(params, X_new[rows], y_new[rows], row_weights, zero, loss=loss, l2_reg=0.0)
        return old - new
    return -objective.gradient(params, X_new, y_new, keep, perturbation, loss=loss, l2_reg=l2_reg)


@functools.partial(jax.jit, static_argnames=("loss", "solver", "update", "cg_maxiter"))
def modification_step(
    params,
    X_old,
    y_old,
    X_new,
    y_new,
    keep,
    rows,
    row_weights,
    perturbation,
    l2_reg,
    cg_rtol=1e-10,
    *,
    loss: str,
    solver: str = "cholesky",
    update: str = "guo",
    cg_maxiter: int | None = None,
) -> removal.NewtonStep:
    """One Newton step from ``w`` towards the minimiser of ``L_b`` on the modified data (module docstring).

    ``u = H'^{-1} Delta`` (guo) or ``-H'^{-1} grad L_b(w; D')`` (gradient), ``H' = grad^2 L(w; D')``.

    Args:
      params: current parameters ``w``.
      X_old, y_old: all rows before the modification; X_new, y_new: all rows after (same shapes).
      keep: 0/1 mask of the retained rows (``D'``).
      rows, row_weights: indices of the modified rows ``S`` and 0/1 weights (pad with weight-0 entries to a
        fixed bucket so that batch sizes share one compilation).
      perturbation: the noise ``b``. l2_reg: ``lambda``. cg_rtol: CG relative tolerance.
      loss: loss name. solver: "cholesky" (dense ``H'``) or "cg" (Hessian-vector products).
      update: "guo" or "gradient". cg_maxiter: CG cap (default ``10 p``).

    Returns:
      :class:`certunlearn.removal.NewtonStep` with ``params = w + u``.

    >>> import jax.numpy as jnp
    >>> X = jnp.eye(2); y = jnp.array([1.0, 3.0]); w = y / 3    # ridge minimiser: (X^T X + 2 I) w = X^T y
    >>> X2 = X.at[1, 1].set(0.0)                                 # zero column 1 in row 1
    >>> step = modification_step(w, X, y, X2, y, jnp.ones(2), jnp.array([1]), jnp.ones(1), jnp.zeros(2),
    ...                          1.0, loss="squared")
    >>> [round(v, 12) + 0.0 for v in step.params.tolist()]       # the minimiser on the modified rows
    [0.333333333333, 0.0]
    """
    rhs = _modification_rhs(params, X_old, y_old, X_new, y_new, keep, rows, row_weights, perturbation, l2_reg,
                            loss=loss, update=update)
    if solver == "cholesky":
        H = hessian.dense_hessian(params, X_new, y_new, keep, loss=loss, l2_reg=l2_reg)
        result = solvers.cholesky_solve(H, rhs.ravel())
        u = result.x.reshape(params.shape)
    elif solver == "cg":
        matvec = hessian.glm_hvp_operator(params, X_new, keep, loss=loss, l2_reg=l2_reg)
        result = solvers.conjugate_gradient(matvec, rhs, rtol=cg_rtol, maxiter=cg_maxiter)
        u = result.x
    else:
        raise ValueError(f"solver must be 'cholesky' or 'cg', got {solver!r}")
    return removal.NewtonStep(params=params + u, converged=result.converged, steps=result.steps,
                              solver_residual=result.residual)


@functools.partial(jax.jit, static_argnames=("loss", "update", "bound"))
def modification_terms(
    params_old,
    params_new,
    X_old,
    y_old,
    X_new,
    y_new,
    keep,
    rows,
    row_weights,
    perturbation,
    l2_reg,
    data_norm,
    max_row_norm,
    *,
    loss: str,
    update: str,
    bound: str,
) -> removal.ResidualTerms:
    """The residual terms of the published step ``params_old -> params_new`` on the modified data.

    Call it with float64 arrays. ``u = params_new - params_old`` is the step actually published (after
    rounding). ``solve_error`` is ``||H' u - rhs||`` plus a rounding margin
    ``8 (n + p) eps (||A||_max ||X'||_F^2 ||u|| + lambda n ||u|| + ||rhs||)``, which covers the float64
    evaluation of the Hessian-vector product (``|fl(X^T S X u) - X^T S X u| <= k eps |X|^T |S| |X| |u|``).
    ``remainder`` is the ``bound``'s proven bound on ``||R(u)||`` (module docstring): ``data_norm`` must be
    an upper bound on ``||X'||_2`` (:func:`modified_data_norm_bound`) and ``max_row_norm`` on every
    ``||x_i'||``. For ``bound="exact"``, ``remainder = 0`` and ``exact_residual`` is the residual itself
    plus a rounding margin.
    """
    loss_ = get_loss(loss)
    u = params_new - params_old
    rhs = _modification_rhs(params_old, X_old, y_old, X_new, y_new, keep, rows, row_weights, perturbation,
                            l2_reg, loss=loss, update=update)
    Hu = hessian.glm_hvp(params_old, X_new, y_new, keep, u, loss=loss, l2_reg=l2_reg)
    n_keep = jnp.sum(keep)
    frob_sq = jnp.sum(keep * jnp.sum(X_new * X_new, axis=1))
    eps = jnp.finfo(X_new.dtype).eps
    k = X_new.shape[0] + params_old.size
    u_norm = _norm(u)
    solve_margin = 8.0 * k * eps * ((objective.CURVATURE_MAX[loss_.name] * frob_sq + l2_reg * n_keep) * u_norm + _norm(rhs))
    solve_error = _norm(Hu - rhs) + solve_margin
    nan = jnp.asarray(jnp.nan, solve_error.dtype)
    if bound == "worst-case":
        remainder = removal.worst_case_remainder(u_norm, n_keep, gamma=loss_.gamma, max_row_norm=max_row_norm)
        return removal.ResidualTerms(solve_error, remainder, nan)
    if bound == "data-dependent":
        remainder = removal.data_dependent_remainder(X_new, keep, u, gamma=loss_.gamma, data_norm=data_norm,
                                                     max_row_norm=max_row_norm)
        return removal.ResidualTerms(solve_error, remainder, nan)
    if bound == "exact":
        g = objective.gradient(params_new, X_new, y_new, keep, perturbation, loss=loss, l2_reg=l2_reg)
        r = loss_.dz(X_new @ params_new, y_new)
        r = r * (keep[:, None] if r.ndim == 2 else keep)
        w_norm = _norm(params_new)
        # Rounding, generously: of z = X w (at most d eps rho ||w|| per row, and l' is 1-Lipschitz for these
        # losses) and of X^T r (k eps ||X||_F ||r||); a few eps of the three terms added; k eps of the norm.
        g_norm = _norm(g)
        margin = eps * (16.0 * k * jnp.sqrt(frob_sq) * (_norm(r) + jnp.sqrt(n_keep) * max_row_norm * w_norm)
                        + 8.0 * (l2_reg * n_keep * w_norm + _norm(perturbation)) + 4.0 * k * g_norm)
        return removal.ResidualTerms(solve_error, jnp.zeros_like(solve_error), g_norm + margin)
    raise ValueError(f"bound must be one of {removal.BOUNDS}, got {bound!r}")


def worst_case_modification_bound(num_modified, num_retained, *, l2_reg, loss, max_row_norm=1.0, extra=0.0):
    """A-priori bound on the Taylor remainder of a modification of ``m`` rows (module docstring).

    ``gamma/2 rho^3 n ((2 m C + extra) / (lambda n))^2`` with ``C = c_l rho`` (:data:`GRADIENT_BOUNDS`);
    for an exact solve (``extra = 0``) this is ``2 gamma rho^3 m^2 C^2 / (lambda^2 n)``. ``extra`` adds to
    ``||rhs||``: the solve error, and for ``update="gradient"`` the previous residual. Sum convention; ``n``
    retained rows, unchanged by the modification.

    >>> round(worst_case_modification_bound(1, 100, l2_reg=0.1, loss="logistic"), 6)  # 2 gamma / (0.01 * 100)
    0.19245
    """
    loss_ = get_loss(loss)
    if loss_.gamma == 0.0:
        return 0.0
    rho, n, m = float(max_row_norm), float(num_retained), float(num_modified)
    step = (2.0 * m * GRADIENT_BOUNDS[loss_.name] * rho + float(extra)) / (float(l2_reg) * n)
    return 0.5 * loss_.gamma * rho**3 * n * step * step


def modified_data_norm_bound(data_norm, X_old_rows, X_new_rows, X_modified=None) -> float:
    """A proven upper bound on ``||X'||_2`` after replacing some rows of ``X`` (``||X||_2 <= data_norm``).

    ``X' = X + E`` with ``E`` zero except on the replaced rows, so ``||X'||_2 <= data_norm + ||E||_F``
    (triangle inequality, ``||E||_2 <= ||E||_F``); if ``X_modified`` (all rows of ``X'``) is given, also
    ``||X'||_2 <= ||X'||_F``, and the smaller bound is returned. Float64 norms are rounded up by
    ``(1 + 4 (k + 4) eps)`` for ``k`` summed terms. Never power iteration (which under-estimates).

    Args:
      data_norm: a proven upper bound on ``||X||_2`` before the modification.
      X_old_rows, X_new_rows: (m, d) the replaced rows before and after.
      X_modified: optional (n, d) array (NumPy or JAX) of every row after the modification.

    >>> import numpy as np
    >>> X = np.eye(3); X_new = X.copy(); X_new[0, 0] = 0.0   # min(1 + 1, ||X_new||_F = sqrt 2)
    >>> bound = modified_data_norm_bound(1.0, X[:1], X_new[:1], X_new)
    >>> bool(np.linalg.norm(X_new, 2) <= bound <= np.sqrt(2) * (1 + 1e-12))
    True
    """
    E = np.asarray(X_new_rows, np.float64) - np.asarray(X_old_rows, np.float64)
    e = math.sqrt(float(np.sum(E * E))) * (1.0 + 4.0 * (E.size + 4) * _EPS64)
    bound = (float(data_norm) + e) * (1.0 + 2.0 * _EPS64)
    if X_modified is not None:
        frob_sq = float(jnp.sum(jnp.square(jnp.asarray(X_modified, jnp.float64))))
        size = int(np.prod(np.shape(X_modified)))
        bound = min(bound, math.sqrt(frob_sq) * (1.0 + 4.0 * (size + 4) * _EPS64))
    return bound


# ----------------------------------------------------------------------------------------------------
# Validation.


def _check_rows(indices, model: api.CertifiedModel, *, name: str) -> np.ndarray:
    return api._check_row_indices(
        indices, model, name=name,
        gone="were removed from the model; only retained rows can be modified (model.retained)",
    )


def _check_X_new(X_new, m: int, d: int, dtype: str) -> np.ndarray:
    """``X_new`` as float64 after rounding to the model ``dtype`` (the values the model will see)."""
    arr = np.asarray(X_new)
    if arr.ndim != 2 or arr.shape != (m, d):
        raise ValueError(f"X_new must have shape ({m}, {d}) (one row per index), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"X_new must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)  # a copy: the caller's array is never touched
    bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
    if bad.size:
        raise ValueError(f"X_new must be finite; rows {bad[:5].tolist()} contain NaN or inf")
    seen = arr.astype(dtype).astype(np.float64)
    norms = np.sqrt(np.sum(seen * seen, axis=1))
    bad = np.flatnonzero(norms > 1.0 + api._ROW_NORM_SLACK)
    if bad.size:
        raise ValueError(
            f"X_new rows must have L2 norm <= 1 for the residual bounds; {bad.size} rows exceed it (row "
            f"{bad[0]} has norm {norms[bad[0]]:.6g}): rescale them, or replace values by smaller ones"
        )
    return seen


def _check_y_new(y_new, m: int, config) -> np.ndarray:
    arr = np.asarray(y_new)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.shape != (m,):
        raise ValueError(f"y_new must have shape ({m},) (one label per index), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
        raise ValueError(f"y_new must hold numeric labels, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("y_new must be finite")
    if config.loss == "logistic":
        if not np.all(np.isin(arr, (-1, 1))):
            raise ValueError(f"y_new must hold labels -1 and +1 for loss='logistic', got {np.unique(arr)[:5].tolist()}")
        return arr.astype(np.float64)
    if config.loss == "softmax":
        k = config.num_classes
        if arr.size and (not np.all(np.mod(arr, 1) == 0) or arr.min() < 0 or arr.max() >= k):
            raise ValueError(f"y_new must hold integer class labels in 0..{k - 1} for loss='softmax', "
                             f"got {np.unique(arr)[:5].tolist()}")
        return arr.astype(np.int32)
    return arr.astype(np.float64)


def _check_columns(columns, d: int) -> np.ndarray:
    arr = np.asarray(columns)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"columns must be an int or a non-empty 1-D array of column indices, got {columns!r}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"columns must be integer column indices, got dtype {arr.dtype}")
    out = arr[(arr < 0) | (arr >= d)]
    if out.size:
        raise ValueError(f"columns must lie in [0, {d}); got {out[:5].tolist()}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"columns must be distinct, got {arr.tolist()}")
    return arr.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# The facade.


def training_data(model: api.CertifiedModel) -> tuple[np.ndarray, np.ndarray]:
    """The model's current training rows ``(X, y)`` (after every modification), as float64/int NumPy copies.

    All ``n`` rows, removed ones included (``model.retained`` marks the retained ones), in the values the
    model sees (rounded to its dtype). Retraining on ``X[model.retained], y[model.retained]`` is the
    reference an unlearned model is compared with.
    """
    X64, y64 = model._data.user_rows64()
    return np.array(X64), np.array(y64)


def _place(array, mesh):
    return array if mesh is None else distributed.place_rows(array, mesh)


@jax.jit
def _set_rows(array, rows, values):
    """``array`` with ``array[rows] = values``; ``rows`` padded with ``len(array)``, which is dropped."""
    return array.at[rows].set(values.astype(array.dtype), mode="drop")


@jax.jit
def _take_rows(array, rows):
    return array[rows]


def _modified_data(data, cfg, idx: np.ndarray, bucket: int, X_seen: np.ndarray | None, y_new: np.ndarray | None):
    """A new ``_Data`` with the rows ``idx`` replaced (padded to ``bucket`` rows: one compilation per size)."""
    m, num_stored = idx.size, int(data.X.shape[0])
    rows = np.full(bucket, num_stored, np.int64)
    rows[:m] = idx
    rows = jnp.asarray(rows)

    def padded(values, dtype):
        out = np.zeros((bucket,) + values.shape[1:], dtype)
        out[:m] = values
        return jnp.asarray(out)

    changes = {}
    if X_seen is not None:
        X_rows = padded(X_seen, np.float64)
        X64 = _place(_set_rows(data.X64, rows, X_rows), data.mesh)
        X = X64 if cfg.dtype == "float64" else _place(_set_rows(data.X, rows, X_rows), data.mesh)
        norms = np.sqrt(np.sum(X_seen * X_seen, axis=1))
        max_row_norm = max(float(data.max_row_norm), float(norms.max()))
        data_norm = math.nan
        if cfg.bound == "data-dependent":
            old_rows = np.asarray(_take_rows(data.X64, jnp.minimum(rows, num_stored - 1)))[:m]
            data_norm = modified_data_norm_bound(data.data_norm, old_rows, X_seen, X64)
        changes.update(X=X, X64=X64, max_row_norm=max_row_norm, data_norm=data_norm)
    if y_new is not None:
        if cfg.loss == "softmax":
            y = _place(_set_rows(data.y, rows, padded(y_new, np.int32)), data.mesh)
            changes.update(y=y, y64=y)
        else:
            y_rows = padded(y_new, np.float64)
            y64 = _place(_set_rows(data.y64, rows, y_rows), data.mesh)
            y = _place(_set_rows(data.y, rows, y_rows), data.mesh)
            changes.update(y=y, y64=y64)
    return dataclasses.replace(data, **changes)


def _resolve_solver(solver: str, model: api.CertifiedModel) -> str:
    api._choice("solver", solver, SOLVERS)
    if solver != "auto":
        return solver
    cfg = model.config
    p = int(model.params.size)
    n = int(model._data.X.shape[0])
    if cfg.solver == "cg" or p > api._DENSE_LIMIT or n * p * p > api._CHEAP_EXACT_FLOPS:
        return "cg"
    return "cholesky"


def _ledger_after_modification(ledger, bound: float, num_rows: int, mode: str):
    """The ledger after a certified modification (event "modification")."""
    return ledger.after_modification(bound, num_rows, mode=mode)


def modify(model: api.CertifiedModel, indices, *, X_new=None, y_new=None, solver: str = "auto"):
    """Replaces the features and/or labels of retained rows with one certified Newton step.

    ``w_new = w + H'^{-1} Delta``, ``Delta = -sum_{i in S} (grad l(w; z_i') - grad l(w; z_i))``,
    ``H' = grad^2 L(w; D')`` on the modified retained rows (sum convention; module docstring for the
    residual bounds and their proofs). The step is published only if the solve converged and the spent
    residual stays within the budget; otherwise the model is retrained on the modified data with fresh
    noise (``on_exhausted="retrain"``) or :class:`certunlearn.api.BudgetExhaustedError` is raised
    (``"raise"``). Zero indices cost nothing. The certificate then says the published model is
    (epsilon, delta)-indistinguishable from one trained on the modified data (replace-m neighbours).

    Args:
      model: the current model (left unchanged, with its data).
      indices: an int or 1-D array of original row indices: distinct, in range, retained.
      X_new: (m, d) new feature values of those rows (e.g. a sensitive column zeroed); finite, rows of
        L2 norm <= 1. None: features unchanged.
      y_new: (m,) new labels (+-1 logistic, 0..K-1 softmax, reals squared). None: labels unchanged.
      solver: "auto" (Cholesky on the dense ``H'`` when it is cheap, as :func:`certunlearn.fit` decides,
        else CG), "cholesky" or "cg" (the model's ``cg_rtol`` and ``cg_maxiter``; a solve that did not
        converge is never certified).

    Returns:
      ``(new_model, report)``: a :class:`certunlearn.api.CertifiedModel` holding the modified data, and a
      :class:`ModificationReport`.

    Raises:
      ValueError: invalid arguments (the message names the argument and the fix).
      BudgetExhaustedError: the step cannot be certified within the budget and ``on_exhausted="raise"``.

    >>> import numpy as np, jax, certunlearn as cu
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 4)); X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = np.where(X[:, 0] > 0, 1.0, -1.0)
    >>> model = cu.fit(X, y, l2_reg=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, key=jax.random.key(0))
    >>> new_model, report = modify(model, [3, 5], y_new=-y[[3, 5]])
    >>> report.retrained, report.residual_spent <= report.residual_budget
    (False, True)
    >>> bool(new_model.exact_residual() <= new_model.certificate().residual_spent)
    True
    """
    cfg, data, c = model.config, model._data, model.calibration
    idx = _check_rows(indices, model, name="indices")
    if X_new is None and y_new is None:
        raise ValueError("give X_new (new feature values) and/or y_new (new labels) for the rows in indices")
    m, d = idx.size, int(data.X.shape[1])
    X_seen = None if X_new is None else _check_X_new(X_new, m, d, cfg.dtype)
    y_checked = None if y_new is None else _check_y_new(y_new, m, cfg)
    solver = _resolve_solver(solver, model)
    spent = model.ledger.residual_spent
    if m == 0:
        report = ModificationReport(idx, X_new is not None, y_new is not None, 0.0, spent, c.residual_budget,
                                    c.epsilon_spent(spent), False, solver=solver)
        return model, report

    start = time.perf_counter()
    # Power-of-two buckets of at least _MIN_BUCKET rows (weight-0 padding): batch sizes share compilations.
    bucket = max(_MIN_BUCKET, 1 << (m - 1).bit_length())
    new_data = _modified_data(data, cfg, idx, bucket, X_seen, y_checked)
    rows = np.zeros(bucket, np.int64)
    rows[:m] = idx
    row_weights = np.zeros(bucket)
    row_weights[:m] = 1.0
    rows_j = jnp.asarray(rows)
    step = modification_step(
        model.params, data.X, data.y, new_data.X, new_data.y, new_data.weights(model.retained, cfg.dtype),
        rows_j, jnp.asarray(row_weights, cfg.dtype), model.perturbation, cfg.l2_reg, cfg.cg_rtol,
        loss=cfg.loss, solver=solver, update=cfg.update, cg_maxiter=cfg.cg_maxiter,
    )
    as64 = lambda a: jnp.asarray(a, jnp.float64)
    terms = modification_terms(
        as64(model.params), as64(step.params), data.X64, data.y64, new_data.X64, new_data.y64,
        new_data.weights(model.retained, jnp.float64), rows_j, jnp.asarray(row_weights),
        as64(model.perturbation), cfg.l2_reg, new_data.data_norm, new_data.max_row_norm,
        loss=cfg.loss, update=cfg.update, bound=cfg.bound,
    )
    solve_error, remainder, exact = (float(t) for t in terms)
    seconds = time.perf_counter() - start
    step_bound, mode = api._step_bound(cfg, solve_error, remainder, exact)
    new_spent = model.ledger.peek(step_bound, mode=mode) if math.isfinite(step_bound) else math.inf
    converged = bool(step.converged)
    certifiable = converged and math.isfinite(step_bound)
    extra = solve_error + (spent if cfg.update == "gradient" else 0.0)
    diagnostics = dict(
        solve_error=solve_error, remainder=remainder, exact_residual=exact,
        worst_case_apriori=worst_case_modification_bound(
            m, model.n_retained, l2_reg=cfg.l2_reg, loss=cfg.loss, max_row_norm=new_data.max_row_norm, extra=extra),
        data_norm=float(new_data.data_norm), solver=solver, solver_steps=int(step.steps), converged=converged,
        seconds=seconds,
    )
    changed = (X_new is not None, y_new is not None)

    if certifiable and new_spent <= c.residual_budget:
        ledger = _ledger_after_modification(model.ledger, step_bound, m, mode)
        new_model = dataclasses.replace(
            model, params=step.params, ledger=ledger, _data=new_data, _cache=None, _cache_stale=False,
            _cache_excess=0.0,
        )
        report = ModificationReport(idx, *changed, step_bound, ledger.residual_spent, c.residual_budget,
                                    c.epsilon_spent(ledger.residual_spent), False, **diagnostics)
        return new_model, report

    if cfg.on_exhausted == "raise":
        if not converged:
            why = "the Newton solve did not converge"
        elif not certifiable:
            why = f"its residual bound is not finite ({step_bound})"
        else:
            why = f"the spent residual would reach {new_spent:.4g} > budget {c.residual_budget:.4g}"
        raise api.BudgetExhaustedError(
            f"cannot certify modifying {m} rows: {why}; retrain (on_exhausted='retrain') or raise sigma"
        )

    start = time.perf_counter()
    key, params, b, r0, steps = api._train(new_data, cfg, c, model.key, model.retained, model.params)
    retrain_seconds = time.perf_counter() - start
    ledger = model.ledger.after_retrain(r0, 0)
    ledger = dataclasses.replace(ledger, modifications=ledger.modifications + int(idx.size))
    new_model = dataclasses.replace(
        model, params=params, perturbation=b, ledger=ledger, key=key, training_residual=r0, _data=new_data,
        _cache=None, _cache_stale=False, _cache_excess=0.0, _train_cost=float(steps), _last_remainder=0.0,
    )
    report = ModificationReport(idx, *changed, r0, r0, c.residual_budget, c.epsilon_spent(r0), True,
                                **diagnostics, retrain_seconds=retrain_seconds)
    return new_model, report


def replace_feature(model: api.CertifiedModel, columns, *, value: float = 0.0, rows=None, solver: str = "auto"):
    """Sets feature ``columns`` to ``value`` in ``rows`` (default: every retained row), certified.

    The common case of Warnecke et al.: unlearn a sensitive feature by zeroing it (``value=0``, which can
    only shorten rows) or by setting it to a constant (rows must still have L2 norm <= 1). Rows whose
    columns already hold ``value`` contribute nothing to the step. Shorthand for :func:`modify` with
    ``X_new = X[rows]`` with those columns replaced.

    Args:
      model: the current model (left unchanged).
      columns: an int or 1-D array of distinct column indices in ``[0, d)``.
      value: the finite value written into those columns.
      rows: original indices of retained rows to change (default: all retained rows).
      solver: as in :func:`modify`.

    Returns:
      ``(new_model, report)`` as :func:`modify`.

    >>> import numpy as np, jax, certunlearn as cu
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 4)); X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = np.where(X[:, 0] + X[:, 3] > 0, 1.0, -1.0)
    >>> model = cu.fit(X, y, l2_reg=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, key=jax.random.key(0))
    >>> new_model, report = replace_feature(model, 3)
    >>> w3, b3 = float(new_model.params[3]), float(new_model.perturbation[3])
    >>> abs(w3 + b3 / (1e-2 * 100)) < 1e-8   # the column's weight is now pure noise, -b_j / (lambda n)
    True
    """
    d = int(model.params.shape[0])
    cols = _check_columns(columns, d)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(
        float(value)
    ):
        raise ValueError(f"value must be a finite number, got {value!r}")
    idx = np.flatnonzero(model.retained) if rows is None else _check_rows(rows, model, name="rows")
    X, _ = training_data(model)
    X_new = X[idx]
    X_new[:, cols] = float(value)
    norms = np.sqrt(np.sum(X_new * X_new, axis=1))
    too_long = np.flatnonzero(norms > 1.0 + api._ROW_NORM_SLACK)
    if too_long.size:
        raise ValueError(
            f"value={value!r} makes {too_long.size} rows longer than 1 (row {idx[too_long[0]]} would have norm "
            f"{norms[too_long[0]]:.6g}); use a smaller |value| (0 always works)"
        )
    return modify(model, idx, X_new=X_new, solver=solver)


def relabel(model: api.CertifiedModel, indices, y_new, *, solver: str = "auto"):
    """Corrects the labels of retained rows (e.g. noisy labels), certified: :func:`modify` with ``y_new``.

    >>> import numpy as np, jax, certunlearn as cu
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 4)); X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = np.where(X[:, 0] > 0, 1.0, -1.0)
    >>> model = cu.fit(X, y, l2_reg=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, key=jax.random.key(0))
    >>> new_model, report = relabel(model, [0], -y[:1])
    >>> float(training_data(new_model)[1][0]) == -float(y[0]), report.retrained
    (True, False)
    """
    return modify(model, indices, y_new=y_new, solver=solver)
