"""The facade users call: :func:`fit`, :func:`remove` and the immutable :class:`CertifiedModel`.

    import certunlearn as cu
    model = cu.fit(X, y, loss="logistic", l2_reg=1e-3, epsilon=1.0, delta=1e-4)
    new_model, report = cu.remove(model, [3, 17])
    print(new_model.certificate())

Conventions (THEORY.md Sec. 1): sum convention ``L_b(w; D) = sum_i l(w; x_i, y_i) + lambda n/2 ||w||^2 +
<b, w>`` over the ``n`` *retained* rows; rows satisfy ``||x_i|| <= 1``; the neighbouring relation is
remove-m (the certificate covers every removal made so far under the current noise draw, singly or in
batches). Only the *latest* model of one noise draw is covered: publishing several snapshots of the same
draw leaks their differences.

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models.
  ICML 2020, arXiv:1911.03030.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certunlearn import calibration as calib
from certunlearn import curvature, distributed, objective, removal, train
from certunlearn.accounting import Ledger
from certunlearn.losses import LOSSES

__all__ = [
    "CertifiedModel",
    "Certificate",
    "RemovalReport",
    "CertificationError",
    "BudgetExhaustedError",
    "fit",
    "fit_batch",
    "remove",
]

ON_EXHAUSTED = ("retrain", "raise")
DTYPES = ("float32", "float64")
_ROW_NORM_SLACK = 1e-6  # Rounding slack on ||x_i|| <= 1; the bounds use the actual max row norm.
_DENSE_LIMIT = 2048  # solver="auto": dense factorisations up to this many parameters, CG above.
_CHEAP_EXACT_FLOPS = 5e8  # solver="auto": rebuild the exact Hessian per removal below n p^2 = this.


class CertificationError(RuntimeError):
    """A certificate cannot be issued (a solve did not converge, a bound is not finite, or the
    training residual alone exceeds the residual budget)."""


class BudgetExhaustedError(CertificationError):
    """The next removal would exceed the residual budget and ``on_exhausted="raise"``."""


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The (epsilon, delta) guarantee of a model, for the residual spent under its current noise draw.

    Attributes:
      epsilon: the epsilon certified for ``residual_spent`` (``<= target_epsilon`` while within budget).
      delta: the delta of the guarantee.
      sigma: standard deviation of the loss perturbation ``b``.
      calibration: "guo" or "analytic".
      bound: the residual bound used ("worst-case", "data-dependent" or "exact").
      residual_spent: ``beta``, a proven upper bound on ``||grad L_b(w; D')||`` (training residual
        included).
      residual_budget: the largest ``beta`` for which ``target_epsilon`` holds.
      removals: rows removed since the first fit. retrains: retrains since the first fit.
      target_epsilon: the epsilon the model was configured for.
      training_residual: ``||r_0||`` of the current noise draw.
      modifications: rows whose values were replaced (:mod:`certunlearn.modify`) since the first fit.
    """

    epsilon: float
    delta: float
    sigma: float
    calibration: str
    bound: str
    residual_spent: float
    residual_budget: float
    removals: int
    retrains: int
    target_epsilon: float
    training_residual: float
    modifications: int = 0

    @property
    def certified(self) -> bool:
        """Whether the spent residual is within the budget (so ``epsilon <= target_epsilon``)."""
        return self.residual_spent <= self.residual_budget

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (
            f"({self.epsilon:.4g}, {self.delta:.3g})-certified removal "
            f"[{self.calibration} calibration, {self.bound} bound, sigma={self.sigma:.4g}]: "
            f"residual {self.residual_spent:.4g} of {self.residual_budget:.4g} spent, "
            f"{self.removals} removals, "
            + (f"{self.modifications} rows modified, " if self.modifications else "")
            + f"{self.retrains} retrains"
        )


@dataclasses.dataclass(frozen=True)
class RemovalReport:
    """What one call of :func:`remove` did.

    Attributes:
      indices: the original row indices removed.
      residual_bound: the step's proven residual bound (added to ``residual_spent`` under Guo's
        accumulation; the whole residual for ``update="gradient"`` or ``bound="exact"``). After a retrain,
        the new training residual.
      residual_spent, residual_budget, epsilon: the model's state after the call.
      retrained: whether the removal was served by retraining with fresh noise.
      solve_error: ``||H u - Delta||`` of the Newton step (NaN when no step was taken). For the float64
        "cached" path, against the cached (stale) factorisation; the staleness is in ``remainder``.
      remainder: the bound on the Taylor remainder (NaN when no step was taken); for the float64
        "cached" path it also bounds the curvature's staleness.
      exact_residual: ``||grad L_b(w_new; D')||`` when computed (``bound="exact"``), else NaN.
      solver_steps: solver iterations (Cholesky: 1). converged: whether the solve converged.
      seconds: wall time of the Newton step and its certificate; retrain_seconds: of the retrain (0 if none).
    """

    indices: np.ndarray
    residual_bound: float
    residual_spent: float
    residual_budget: float
    epsilon: float
    retrained: bool
    solve_error: float = math.nan
    remainder: float = math.nan
    exact_residual: float = math.nan
    solver_steps: int = 0
    converged: bool = True
    seconds: float = 0.0
    retrain_seconds: float = 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class _Data:
    """Training data shared (read-only) by every version of a model."""

    X: jax.Array  # (n, d) in the model dtype
    y: jax.Array
    X64: jax.Array  # float64 copies for certificates (the same arrays when dtype is float64)
    y64: jax.Array
    max_row_norm: float
    data_norm: float  # proven upper bound on ||X||_2 (NaN unless bound == "data-dependent")
    num_rows: int  # n, the user's rows; X has more (zero rows of weight 0) when sharded over a mesh
    mesh: Any = None  # the jax.sharding.Mesh whose "data" axis shards the rows, or None (one device)

    def weights(self, mask, dtype) -> jax.Array:
        """The (n,) retained-row ``mask`` as weights over the stored rows (0 on padding), placed like X."""
        return distributed.place_weights(mask, num_rows=self.X.shape[0], mesh=self.mesh, dtype=dtype)

    def user_rows64(self) -> tuple[jax.Array, jax.Array]:
        """``(X64, y64)`` without the padding rows: the n rows the user passed."""
        if self.X64.shape[0] == self.num_rows:
            return self.X64, self.y64
        return self.X64[: self.num_rows], self.y64[: self.num_rows]


@dataclasses.dataclass(frozen=True, eq=False)
class _Config:
    loss: str
    l2_reg: float
    bound: str
    solver: str
    update: str
    on_exhausted: str
    train_method: str
    tol: float
    max_steps: int
    dtype: str
    num_classes: int | None
    cg_rtol: float = 1e-10
    cg_maxiter: int | None = None
    cache_rows: int = 128
    refresh_iters: int = 4
    refresh_ratio: float = math.inf
    cg_preconditioner: str = "auto"
    preconditioner_rows: int = train.PRECONDITIONER_ROWS
    cg_error_ratio: float = 0.01


@dataclasses.dataclass(frozen=True, eq=False)
class CertifiedModel:
    """A trained model with its noise draw, retained-row mask and residual ledger. Immutable.

    Use :func:`fit` to make one and :func:`remove` to derive new ones.

    Attributes:
      params: (d,) for logistic/squared, (d, K) for softmax.
      perturbation: the noise ``b`` of the current training run (research access; never publish it).
      retained: read-only boolean mask over the n training rows.
      calibration: the :class:`certunlearn.calibration.Calibration` (epsilon, delta, sigma, budget).
      ledger: the :class:`certunlearn.accounting.Ledger` of residual spent, removals and retrains.
      key: the PRNG key from which the next retrain's noise is drawn.
    """

    params: jax.Array
    perturbation: jax.Array
    retained: np.ndarray
    calibration: calib.Calibration
    ledger: Ledger
    key: jax.Array
    config: _Config
    training_residual: float
    _data: _Data = dataclasses.field(repr=False)
    _cache: Any = dataclasses.field(default=None, repr=False)  # curvature.CurvatureCache for "cached"
    _cache_stale: bool = dataclasses.field(default=False, repr=False)
    # Rent-or-buy refresh of the "cached" path (see _cached_step_float64): residual budget spent on
    # curvature staleness since the last rebuild, and the last training's cost in Hessian builds.
    _cache_excess: float = dataclasses.field(default=0.0, repr=False)
    _train_cost: float = dataclasses.field(default=math.inf, repr=False)
    # The "cg" path's absolute tolerance is cg_error_ratio times the last step's remainder bound (0: none yet).
    _last_remainder: float = dataclasses.field(default=0.0, repr=False)

    @property
    def n_retained(self) -> int:
        return int(self.retained.sum())

    @property
    def removed(self) -> np.ndarray:
        """Original indices of every removed row, sorted."""
        return np.flatnonzero(~self.retained)

    def certificate(self) -> Certificate:
        """The (epsilon, delta) certificate for the residual spent so far under the current noise."""
        c = self.calibration
        spent = self.ledger.residual_spent
        return Certificate(
            epsilon=c.epsilon_spent(spent),
            delta=c.delta,
            sigma=c.sigma,
            calibration=c.calibration,
            bound=self.config.bound,
            residual_spent=spent,
            residual_budget=c.residual_budget,
            removals=self.ledger.removals,
            retrains=self.ledger.retrains,
            target_epsilon=c.epsilon,
            training_residual=self.training_residual,
            modifications=self.ledger.modifications,
        )

    def exact_residual(self) -> float:
        """``||grad L_b(params; retained rows)||_2``, computed in float64 (O(nd))."""
        d = self._data
        return float(
            _gradient_norm(
                _as64(self.params),
                d.X64,
                d.y64,
                d.weights(self.retained, jnp.float64),
                _as64(self.perturbation),
                self.config.l2_reg,
                loss=self.config.loss,
            )
        )

    def decision_function(self, X) -> jax.Array:
        """The linear predictor ``X @ params``: (n,) or (n, K) logits."""
        X = _check_features(X, self.params.shape[0], name="X")
        return jnp.asarray(X, self.params.dtype) @ self.params

    def predict(self, X) -> jax.Array:
        """Labels: +-1 (logistic), class index (softmax) or the real prediction (squared)."""
        z = self.decision_function(X)
        if self.config.loss == "logistic":
            return jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)
        if self.config.loss == "softmax":
            return jnp.argmax(z, axis=-1)
        return z

    def score(self, X, y) -> float:
        """Accuracy (classification) or mean squared error (squared loss) on ``(X, y)``."""
        pred = np.asarray(self.predict(X))
        y = np.asarray(y)
        if self.config.loss == "squared":
            return float(np.mean((pred - y) ** 2))
        return float(np.mean(pred == y))

    def remove(self, indices) -> tuple["CertifiedModel", RemovalReport]:
        """Shorthand for :func:`remove` ``(self, indices)``."""
        return remove(self, indices)


# ----------------------------------------------------------------------------------------------------
# Validation


def _as64(a):
    return jnp.asarray(a, jnp.float64)


def _gradient_norm(params, X, y, weights, perturbation, l2_reg, *, loss):
    return objective.gradient_norm(params, X, y, weights, perturbation, loss=loss, l2_reg=l2_reg)


def _gradient_norm_bound(params, X, y, weights, perturbation, l2_reg, *, loss):
    # The training residual enters the certificate, so it is the computed norm plus its rounding bound.
    return objective.gradient_norm_upper_bound(params, X, y, weights, perturbation, loss=loss, l2_reg=l2_reg)


_gradient_norm = jax.jit(_gradient_norm, static_argnames=("loss",))
_gradient_norm_bound = jax.jit(_gradient_norm_bound, static_argnames=("loss",))


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _positive(name, value, *, allow_zero=False):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and (float(value) >= 0 if allow_zero else float(value) > 0)
    if not ok:
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {rel}, got {value!r}")
    return float(value)


def _check_features(X, d, *, name):
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}), got {arr.shape}")
    return arr


def _check_X(X) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"X must be a 2-D array (n, d) with n >= 2, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"X must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        raise ValueError(f"X must be finite; rows {bad[:5].tolist()} contain NaN or inf: clean or drop them")
    return arr


def _check_row_norms(X64: np.ndarray) -> None:
    norms = np.sqrt(np.sum(X64 * X64, axis=1))
    bad = np.flatnonzero(norms > 1.0 + _ROW_NORM_SLACK)
    if bad.size:
        raise ValueError(
            f"X rows must have L2 norm <= 1 for the residual bounds (THEORY Sec. 1); {bad.size} rows exceed "
            f"it (row {bad[0]} has norm {norms[bad[0]]:.6g}). Normalise them first, e.g. with "
            "certunlearn.data.normalize_rows(X)."
        )


def _check_y(y, n, loss, num_classes):
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got {arr.shape}")
    if loss == "logistic":
        if not np.all(np.isin(arr, (-1, 1))):
            raise ValueError("y must hold labels -1 and +1 for loss='logistic' (use data.load(..., classes=(a, b)))")
        return arr.astype(np.float64), None
    if loss == "softmax":
        if not (np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)):
            raise ValueError("y must hold integer class labels 0..K-1 for loss='softmax'")
        arr = arr.astype(np.int32)
        k = int(arr.max()) + 1 if num_classes is None else int(num_classes)
        if arr.min() < 0 or arr.max() >= k or k < 2:
            raise ValueError(f"y must hold labels in 0..{k - 1} for loss='softmax' (num_classes={k})")
        return arr, k
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("y must be finite for loss='squared'")
    return arr, None


def _check_dtype(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return name


def _check_key(key):
    try:
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    except AttributeError:
        pass
    raise ValueError(f"key must be a JAX PRNG key such as jax.random.key(0), got {key!r}")


def _default_tol(dtype: str, n: int) -> float:
    # Close to what the dtype resolves for a gradient that sums n terms, so that the model is the
    # minimiser for all practical purposes; Newton needs only a step or two more to get there.
    return (1e-9 if dtype == "float64" else 1e-4) * math.sqrt(n)


# ----------------------------------------------------------------------------------------------------
# fit


def _setup(
    X,
    y,
    *,
    loss: str = "logistic",
    l2_reg: float = 1e-3,
    epsilon: float = 1.0,
    delta: float = 1e-4,
    sigma: float | None = None,
    residual_budget: float | None = None,
    calibration: str = "analytic",
    bound: str = "data-dependent",
    dtype: str = "float64",
    solver: str = "auto",
    update: str = "guo",
    on_exhausted: str = "retrain",
    train_method: str = "newton",
    tol: float | None = None,
    max_steps: int = 200,
    num_classes: int | None = None,
    cg_rtol: float = 1e-10,
    cg_maxiter: int | None = None,
    cache_rows: int = 128,
    cg_preconditioner: str = "auto",
    mesh: jax.sharding.Mesh | None = None,
    cache_refresh_ratio: float = math.inf,
    cg_error_ratio: float = 0.01,
):
    """Validates ``fit``'s arguments once and builds the shared data, config and calibration."""
    _choice("loss", loss, LOSSES)
    _choice("bound", bound, removal.BOUNDS)
    _choice("update", update, removal.UPDATES)
    _choice("solver", solver, removal.SOLVERS + ("auto",))
    _choice("on_exhausted", on_exhausted, ON_EXHAUSTED)
    _choice("train_method", train_method, train.METHODS)
    dtype = _check_dtype(dtype)
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError('dtype="float64" needs jax_enable_x64; import certunlearn enables it unless disabled')
    l2_reg = _positive("l2_reg", l2_reg)
    if sigma is not None:
        sigma = _positive("sigma", sigma, allow_zero=True)
    if residual_budget is not None:
        residual_budget = _positive("residual_budget", residual_budget)
    if tol is not None:
        tol = _positive("tol", tol)
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    if mesh is not None:
        distributed.check_mesh(mesh)
    calibration_ = calib.calibrate(
        epsilon=epsilon, delta=delta, sigma=sigma, residual_budget=residual_budget, calibration=calibration
    )
    if calibration_.calibration == "guo" and calib.analytic_delta(
        calibration_.epsilon, calibration_.sigma, calibration_.residual_budget
    ) > calibration_.delta * (1 + 1e-9):
        warnings.warn(
            f"Guo et al.'s calibration under-noises at epsilon={calibration_.epsilon:g}: its true delta is "
            f"{calib.analytic_delta(calibration_.epsilon, calibration_.sigma, calibration_.residual_budget):.3g}"
            f" > {calibration_.delta:g}; use calibration='analytic'",
            stacklevel=2,
        )

    X64 = _check_X(X)
    n, d = X64.shape
    _check_row_norms(X64)
    y64, k = _check_y(y, n, loss, num_classes)
    _choice("cg_preconditioner", cg_preconditioner, ("auto", "subsample", "kronecker", "none"))
    p = d * (k or 1)
    if solver == "auto":
        # Rebuilding the exact Hessian is cheap for small problems and gives the tightest bound.
        solver = ("cholesky" if n * p * p <= _CHEAP_EXACT_FLOPS else "cached") if p <= _DENSE_LIMIT else "cg"
    if cg_preconditioner == "auto":
        # The projected preconditioner needs an eigendecomposition of the (d, d) Gram matrix.
        cg_preconditioner = "subsample" if d <= train.PROJECTION_MAX_FEATURES else "kronecker"
    cg_rtol = _positive("cg_rtol", cg_rtol)
    for name, value in (("cg_maxiter", cg_maxiter), ("cache_rows", cache_rows)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    tol = _default_tol(dtype, n) if tol is None else tol

    # The bounds must hold for the rows the model actually sees, i.e. after the cast to ``dtype``.
    X_seen = np.asarray(X64, dtype).astype(np.float64)
    max_row_norm = max(1.0, float(np.sqrt(np.sum(X_seen * X_seen, axis=1)).max()))
    data_norm = removal.spectral_norm_upper_bound(X_seen) if bound == "data-dependent" else math.nan
    if mesh is not None:
        # Zero rows of weight 0 add nothing to any sum, to n or to a bound; max_row_norm and data_norm
        # above are those of the user's rows.
        X_seen, y64, _ = distributed.pad_rows(X_seen, y64, distributed.num_shards(mesh))
    place = lambda a: distributed.place_rows(a, mesh)
    if loss == "softmax":
        yd = y64j = place(np.asarray(y64, np.int32))
    else:
        yd, y64j = place(np.asarray(y64, dtype)), place(np.asarray(y64, np.float64))
    X64j = place(X_seen)
    Xd = X64j if dtype == "float64" else place(np.asarray(X_seen, dtype))
    data = _Data(Xd, yd, X64j, y64j, max_row_norm, data_norm, n, mesh)
    config = _Config(
        loss, l2_reg, bound, solver, update, on_exhausted, train_method, tol, int(max_steps), dtype, k,
        cg_rtol=cg_rtol, cg_maxiter=cg_maxiter, cache_rows=int(cache_rows), cg_preconditioner=cg_preconditioner,
        refresh_ratio=_positive("cache_refresh_ratio", cache_refresh_ratio) if math.isfinite(cache_refresh_ratio)
        else math.inf,
        cg_error_ratio=_positive("cg_error_ratio", cg_error_ratio, allow_zero=True),
    )

    shape = (d,) if k is None else (d, k)
    return data, config, calibration_, shape


def fit(
    X,
    y,
    *,
    loss: str = "logistic",
    l2_reg: float = 1e-3,
    epsilon: float = 1.0,
    delta: float = 1e-4,
    sigma: float | None = None,
    residual_budget: float | None = None,
    calibration: str = "analytic",
    bound: str = "data-dependent",
    key: jax.Array | None = None,
    dtype: str = "float64",
    solver: str = "auto",
    update: str = "guo",
    on_exhausted: str = "retrain",
    train_method: str = "newton",
    tol: float | None = None,
    max_steps: int = 200,
    num_classes: int | None = None,
    cg_rtol: float = 1e-10,
    cg_maxiter: int | None = None,
    cache_rows: int = 128,
    cg_preconditioner: str = "auto",
    mesh: jax.sharding.Mesh | None = None,
    cache_refresh_ratio: float = math.inf,
    cg_error_ratio: float = 0.01,
) -> CertifiedModel:
    """Trains a certified model: the minimiser of the perturbed objective ``L_b`` (sum convention).

    ``b ~ N(0, sigma^2 I)``. Exactly one of ``sigma`` and ``residual_budget`` may be given and the other
    follows from (epsilon, delta) and the calibration; with neither, ``sigma = 1``.

    Args:
      X: (n, d) training rows, finite, with ``||x_i|| <= 1`` (:func:`certunlearn.data.normalize_rows`).
      y: (n,) labels: +-1 (logistic), 0..K-1 (softmax) or reals (squared).
      loss: "logistic", "softmax" or "squared".
      l2_reg: ``lambda > 0``; the regulariser is ``lambda n/2 ||w||^2``.
      epsilon, delta: the target guarantee (``epsilon > 0``, ``0 < delta < 1``).
      sigma: noise standard deviation. residual_budget: the largest certified residual ``beta``.
      calibration: "analytic" (Balle & Wang 2018, via dp_accounting) or "guo" (``c = sqrt(2 ln(1.5/delta))``).
      bound: per-removal residual bound: "worst-case", "data-dependent" or "exact".
      key: PRNG key for the noise (and every later retrain's fresh noise). Default ``jax.random.key(0)``.
      dtype: "float64" or "float32" for training and removal; certificates are always computed in float64.
      solver: the Newton solve of each removal. "cholesky": the Hessian on the retained rows, rebuilt
        and factorised per removal, O(n d^2). "cached": a Cholesky factorisation kept across removals,
        downdated for removed rows (Woodbury) and used to precondition CG on exact Hessian-vector
        products, O(p^2 + n d) per removal (:mod:`certunlearn.curvature`). "cg": matrix-free CG, O(n p)
        memory. "auto": "cached" up to 2048 parameters, "cg" above.
      update: "guo" (Newton step on Delta, residuals accumulate) or "gradient" (Newton step on the full
        perturbed gradient of the retained rows; the step also corrects earlier residual).
      on_exhausted: when a removal would exceed the budget: "retrain" (on the retained rows with fresh
        noise) or "raise" (:class:`BudgetExhaustedError`).
      train_method: "newton" or "lbfgs". tol: training gradient-norm tolerance (default ``1e-9 sqrt(n)`` in float64,
        ``1e-4 sqrt(n)`` in float32); the training residual it leaves is charged to the budget. max_steps: optimiser step cap.
      num_classes: K for softmax (default ``max(y) + 1``).
      cg_rtol, cg_maxiter: tolerance and cap of CG solves (the solve error is charged to the budget;
        a solve that does not converge is never certified).
      cache_rows: removed rows a cached factorisation absorbs before it is rebuilt ("cached" only).
      cache_refresh_ratio: "cached" in float64 also rebuilds when curvature drift made a step's bound this
        many times its Taylor part, which keeps the step close to exact Newton at the cost of more
        rebuilds. Default ``math.inf``: only the rent-or-buy rule rebuilds, when the budget that
        staleness costs is worth more than a rebuild (staleness is always charged to the certificate).
        Fashion-MNIST 2v4, 1,000 removals: ratio 20 costs 44 ms per removal and ends at epsilon 0.28;
        ``inf`` costs 12 ms and ends at 0.93 of 1 (``python -m benchmarks.removal``, long sequence).
      cg_error_ratio: for "cg": CG also stops once ``||H u - Delta|| <= cg_error_ratio`` times the previous
        step's remainder bound, since a smaller solve error buys nothing (it is charged to the certificate
        either way, recomputed in float64). 0: always solve to ``cg_rtol``.
      cg_preconditioner: for "cg": "subsample" (the Hessian on 8192 random retained rows, rescaled, on
        the top ``1024 / K`` principal directions of the data and ``lambda n`` elsewhere;
        :class:`~certunlearn.curvature.ProjectedPreconditioner`, O(d^2) memory), "kronecker" (K-FAC
        factors, O(d^2 + K^2) memory), "none", or "auto" ("subsample" up to 4096 features). Built at the
        first removal after each (re)training.
      mesh: shard the rows of X, y and the retained-row masks over this mesh's ``"data"`` axis (data
        parallelism; :func:`certunlearn.distributed.make_data_mesh`). Rows are zero-padded internally to
        a multiple of the device count, with weight 0; parameters, Hessians and factors are replicated.
        Default None: one device. See docs/multi_device.md.

    Returns:
      A :class:`CertifiedModel`.

    Raises:
      ValueError: invalid arguments (the message names the argument and the fix).
      CertificationError: training did not converge, or its residual alone exceeds the budget.

    >>> import numpy as np, jax
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = np.where(X @ np.arange(1.0, 6.0) > 0, 1.0, -1.0)
    >>> model = fit(X, y, l2_reg=1e-2, epsilon=1.0, delta=1e-4, sigma=0.1, key=jax.random.key(0))
    >>> new_model, report = remove(model, [0, 1])
    >>> new_model.n_retained, report.retrained, new_model.certificate().epsilon <= 1.0
    (198, False, True)
    """
    key = _check_key(jax.random.key(0) if key is None else key)
    data, config, calibration_, shape = _setup(
        X, y, loss=loss, l2_reg=l2_reg, epsilon=epsilon, delta=delta, sigma=sigma,
        residual_budget=residual_budget, calibration=calibration, bound=bound, dtype=dtype, solver=solver,
        update=update, on_exhausted=on_exhausted, train_method=train_method, tol=tol, max_steps=max_steps,
        num_classes=num_classes, cg_rtol=cg_rtol, cg_maxiter=cg_maxiter, cache_rows=cache_rows,
        cg_preconditioner=cg_preconditioner, mesh=mesh, cache_refresh_ratio=cache_refresh_ratio,
        cg_error_ratio=cg_error_ratio,
    )
    n = data.num_rows
    retained = np.ones(n, dtype=bool)
    retained.setflags(write=False)
    params0 = jnp.zeros(shape, config.dtype)
    key, params, b, r0, steps = _train(data, config, calibration_, key, retained, params0)
    return CertifiedModel(
        params, b, retained, calibration_, Ledger.start(r0), key, config, r0, data, _train_cost=float(steps)
    )


def fit_batch(X, y, *, keys, retained=None, **kwargs) -> list[CertifiedModel]:
    """Trains one certified model per noise key (and retained-row mask) in one compiled, vmapped call.

    The same as ``[fit(X_r, y_r, key=k, **kwargs) for k, r in zip(keys, retained)]`` with ``X_r`` the retained
    rows (the sum convention makes the regulariser ``lambda n_r / 2``), but the arguments are validated
    once, ``||X||_2`` is bounded once and the optimiser runs under :func:`jax.vmap` over the noise draws
    and masks: what independent seeds of an experiment, or retrained references, need. Each model's
    noise is drawn exactly as :func:`fit` draws it from its key, so ``fit_batch(X, y, keys=[k])[0]``
    equals ``fit(X, y, key=k)``.

    Args:
      X, y: as for :func:`fit`.
      keys: a sequence of PRNG keys (one model each).
      retained: optional (len(keys), n) boolean masks of the rows each model trains on (default all);
        the models record them, so later removals index the original rows.
      **kwargs: every other :func:`fit` argument (not ``key`` or ``mesh``).

    Returns:
      A list of :class:`CertifiedModel`, in the order of ``keys``.

    Raises:
      ValueError: invalid arguments, as :func:`fit`; ``retained`` of the wrong shape or keeping no row.
      CertificationError: a model's training did not converge, or its residual exceeds the budget.

    >>> import numpy as np, jax
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 4)); X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = np.where(X[:, 0] > 0, 1.0, -1.0)
    >>> models = fit_batch(X, y, keys=[jax.random.key(s) for s in range(3)], l2_reg=1e-2, sigma=0.1)
    >>> single = fit(X, y, key=jax.random.key(1), l2_reg=1e-2, sigma=0.1)
    >>> len(models), bool(np.allclose(models[1].params, single.params, rtol=1e-9, atol=1e-12))
    (3, True)
    """
    for name in ("key", "mesh"):
        if kwargs.get(name) is not None:
            raise ValueError(f"{name} is not an argument of fit_batch (pass keys=[...]; mesh is for fit only)")
        kwargs.pop(name, None)
    keys = [_check_key(k) for k in keys]
    if not keys:
        raise ValueError("keys must hold at least one PRNG key, got none")
    data, config, calibration_, shape = _setup(X, y, **kwargs)
    n = data.num_rows
    if retained is None:
        masks = np.ones((len(keys), n), dtype=bool)
    else:
        masks = np.array(retained, dtype=bool, copy=True)
        if masks.shape != (len(keys), n):
            raise ValueError(f"retained must have shape ({len(keys)}, {n}) (one mask per key), got {masks.shape}")
        if not masks.any(axis=1).all():
            raise ValueError(f"retained must keep at least one row per model; masks {np.flatnonzero(~masks.any(1))[:5].tolist()} keep none")
    params0 = jnp.zeros(shape, config.dtype)
    new_keys, params, bs, r0s, steps = _train_many(data, config, calibration_, keys, masks, params0)
    models = []
    for i in range(len(keys)):
        mask = masks[i].copy()
        mask.setflags(write=False)
        models.append(CertifiedModel(
            params[i], bs[i], mask, calibration_, Ledger.start(r0s[i]), new_keys[i], config, r0s[i], data,
            _train_cost=float(steps[i]),
        ))
    return models


def _train_many(data: _Data, config: _Config, calibration_, keys, masks, params0):
    """:func:`_train` for several (key, mask) pairs, vmapped; the same noise draws and checks."""
    split = [jax.random.split(k) for k in keys]
    new_keys = [s[0] for s in split]
    subs = jnp.stack([jax.random.key_data(s[1]) for s in split])
    weights = jnp.stack([data.weights(m, config.dtype) for m in masks])
    params, bs, converged, grad_norms, steps = _fit_vmapped(
        subs, weights, params0, data.X, data.y, calibration_.sigma, config.l2_reg, config.tol,
        loss=config.loss, method=config.train_method, solver="cg" if config.solver == "cg" else "cholesky",
        max_steps=config.max_steps, preconditioner_rows=_train_preconditioner_rows(config),
    )
    r0s = _gradient_norms(_as64(params), data.X64, data.y64, _as64(weights), _as64(bs), config.l2_reg,
                          loss=config.loss)
    r0s, converged, grad_norms, steps = (np.asarray(a) for a in (r0s, converged, grad_norms, steps))
    for i, r0 in enumerate(r0s):
        if not converged[i] or not math.isfinite(float(r0)):
            raise CertificationError(
                f"training model {i} did not reach tol={config.tol:.3g} in {int(steps[i])} steps (gradient norm "
                f"{float(grad_norms[i]):.3g}); raise max_steps, loosen tol, or use dtype='float64'"
            )
        if r0 > calibration_.residual_budget:
            raise CertificationError(
                f"model {i}'s training residual {float(r0):.3g} alone exceeds the residual budget "
                f"{calibration_.residual_budget:.3g}; lower tol, use dtype='float64', or increase sigma"
            )
    return new_keys, params, bs, [float(r) for r in r0s], [int(s) for s in steps]


@functools.partial(jax.jit, static_argnames=("loss", "method", "solver", "max_steps", "preconditioner_rows"))
def _fit_vmapped(key_data, weights, params0, X, y, sigma, l2_reg, tol, *, loss, method, solver, max_steps,
                 preconditioner_rows=None):
    def one(kd, w):
        b = (sigma * jax.random.normal(jax.random.wrap_key_data(kd), params0.shape, jnp.float64)).astype(params0.dtype)
        res = train.fit_params(params0, X, y, w, b, l2_reg, tol, loss=loss, method=method, solver=solver,
                               max_steps=max_steps, preconditioner_rows=preconditioner_rows)
        return res.params, b, res.converged, res.grad_norm, res.steps

    return jax.vmap(one)(key_data, weights)


@functools.partial(jax.jit, static_argnames=("loss",))
def _gradient_norms(params, X, y, weights, perturbation, l2_reg, *, loss):
    norm = lambda p, w, b: objective.gradient_norm_upper_bound(p, X, y, w, b, loss=loss, l2_reg=l2_reg)
    return jax.vmap(norm)(params, weights, perturbation)


def _train_preconditioner_rows(config: _Config) -> int | None:
    """The projected CG preconditioner in Newton training: train's size rule (None) where removals use it
    too, else none (0)."""
    return None if config.solver == "cg" and config.cg_preconditioner == "subsample" else 0


def _train(data: _Data, config: _Config, calibration_, key, retained, params0):
    """Draws fresh noise, fits ``L_b`` on the retained rows, and checks the training residual."""
    key, sub = jax.random.split(key)
    b = (calibration_.sigma * jax.random.normal(sub, params0.shape, jnp.float64)).astype(config.dtype)
    weights = data.weights(retained, config.dtype)
    run = lambda start: train.fit_params(
        start,
        data.X,
        data.y,
        weights,
        b,
        config.l2_reg,
        config.tol,
        loss=config.loss,
        method=config.train_method,
        solver="cg" if config.solver == "cg" else "cholesky",
        max_steps=config.max_steps,
        preconditioner_rows=_train_preconditioner_rows(config),
    )
    result = run(params0)
    if not bool(result.converged) and bool(jnp.any(params0 != 0)):
        # A warm start (a retrain from the current parameters) can sit where damped Newton stalls; the
        # objective is strictly convex, so a cold start from zero always reaches the minimiser.
        result = run(jnp.zeros_like(params0))
    r0 = float(_gradient_norm_bound(_as64(result.params), data.X64, data.y64, _as64(weights), _as64(b), config.l2_reg,
                                    loss=config.loss))
    if not bool(result.converged) or not math.isfinite(r0):
        raise CertificationError(
            f"training did not reach tol={config.tol:.3g} in {int(result.steps)} steps (gradient norm "
            f"{float(result.grad_norm):.3g}); raise max_steps, loosen tol, or use dtype='float64'"
        )
    if r0 > calibration_.residual_budget:
        raise CertificationError(
            f"the training residual {r0:.3g} alone exceeds the residual budget "
            f"{calibration_.residual_budget:.3g}; lower tol, use dtype='float64', or increase sigma"
        )
    return key, result.params, b, r0, int(result.steps)


# ----------------------------------------------------------------------------------------------------
# remove


def _check_row_indices(indices, model: CertifiedModel, *, name: str, gone: str) -> np.ndarray:
    """Distinct, in-range, retained row indices as int64 (shared by :func:`remove` and ``modify``).

    ``gone`` finishes the message for indices of rows no longer retained.
    """
    arr = np.asarray(indices)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be an int or a 1-D array of row indices, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or not (
        np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)
    ):
        raise ValueError(f"{name} must be integer row indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    n = model.retained.shape[0]
    out = arr[(arr < 0) | (arr >= n)]
    if out.size:
        raise ValueError(f"{name} must lie in [0, {n}); got {out[:5].tolist()}")
    uniq, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"{name} must be distinct; {uniq[counts > 1][:5].tolist()} appear more than once")
    removed = arr[~model.retained[arr]]
    if removed.size:
        raise ValueError(f"{name} {removed[:5].tolist()} {gone}")
    return arr


def _check_indices(indices, model: CertifiedModel) -> np.ndarray:
    arr = _check_row_indices(indices, model, name="indices",
                             gone="were already removed; an index can be removed only once")
    if arr.size >= model.n_retained:
        raise ValueError("indices would remove every retained row; at least one must remain")
    return arr


def _cg_preconditioner(model: CertifiedModel, keep: np.ndarray):
    """The preconditioner of the "cg" path, built at the current parameters from a row subsample."""
    cfg, data = model.config, model._data
    if cfg.cg_preconditioner == "none":
        return None
    retained = np.flatnonzero(keep)
    rng = np.random.default_rng(int(jax.random.randint(model.key, (), 0, 2**31 - 1)))
    # A fixed subsample size (padded with weight-0 rows) so that rebuilding never recompiles.
    size = min(cfg.preconditioner_rows, keep.size)
    real = min(size, retained.size)
    sub = np.zeros(size, np.int64)
    sub[:real] = rng.choice(retained, size=real, replace=False)
    scale = retained.size / real
    weights = jnp.asarray(np.where(np.arange(size) < real, scale, 0.0), cfg.dtype)
    X_sub = data.X[sub]
    if cfg.cg_preconditioner == "kronecker":
        return curvature.kronecker_preconditioner(
            model.params, X_sub, weights / scale, scale, cfg.l2_reg * retained.size, loss=cfg.loss
        )
    # The subsample Hessian with weights n/n_s (so its regulariser is lambda n), on the top directions.
    rank = curvature.projection_rank(X_sub.shape[1], curvature.columns_per_row(model.params.shape))
    return curvature.projected_preconditioner(
        model.params, X_sub, weights / scale, scale, cfg.l2_reg * retained.size, loss=cfg.loss, rank=rank
    )


def _cache_columns(model: CertifiedModel) -> int:
    return model.config.cache_rows * curvature.columns_per_row(model.params.shape)


def _step_bound(cfg: _Config, solve_error, remainder, exact) -> tuple[float, str]:
    """The step's bound and how the ledger takes it ("accumulate" for Guo's Delta, else "replace")."""
    if cfg.bound == "exact":
        return float(exact), "replace"
    return float(solve_error) + float(remainder), "accumulate" if cfg.update == "guo" else "replace"


def _step_spent(model: CertifiedModel, solve_error, remainder, exact) -> float:
    """The residual that would be spent after a step with these terms (inf if not finite)."""
    bound, mode = _step_bound(model.config, solve_error, remainder, exact)
    return model.ledger.peek(bound, mode=mode) if math.isfinite(bound) else math.inf


def _cache_needs_rebuild(model: CertifiedModel, need: int) -> bool:
    cache = model._cache
    return cache is None or model._cache_stale or int(cache.used) + need > _cache_columns(model)


def _build_cache(model: CertifiedModel, keep_d):
    cfg, data = model.config, model._data
    return curvature.build_cache(
        model.params, data.X, data.y, keep_d, cfg.l2_reg, loss=cfg.loss, capacity=_cache_columns(model)
    )


def _cached_step_pcg(model: CertifiedModel, step_args, need: int):
    """The "cached" step in float32: the downdated factorisation preconditions CG on exact HVPs, and
    the certificate recomputes the solve error with HVPs in float64 (:func:`removal.residual_terms`)."""
    cfg = model.config
    row_weights_d = step_args[-1]

    def step_with(cache, downdate_weights):
        return removal.cached_newton_step(
            *step_args, downdate_weights, model.perturbation, cfg.l2_reg, cache, cfg.cg_rtol,
            loss=cfg.loss, update=cfg.update, cg_maxiter=cfg.cg_maxiter or 50,
        )

    if not _cache_needs_rebuild(model, need):
        step, part = step_with(model._cache, row_weights_d)
        if bool(step.converged):
            return step, curvature.with_state(model._cache, part), int(step.steps) > cfg.refresh_iters
    cache = _build_cache(model, step_args[3])
    step, part = step_with(cache, jnp.zeros_like(row_weights_d))
    return step, curvature.with_state(cache, part), int(step.steps) > cfg.refresh_iters


def _cached_step_float64(model: CertifiedModel, step_args, need: int, *, rebuild: bool = False):
    """The "cached" step in float64: Newton step with the downdated factorisation, certified by a bound
    that charges the curvature's staleness, with one pass over the data (:func:`removal.cached_removal`).

    The cache is rebuilt at the current parameters, on the rows retained after this removal, when there
    is none (first removal, after a retrain), when it is full, when the stale step would not fit in the
    budget (``rebuild=True``), or by a rent-or-buy rule: staleness costs residual budget (the bound's
    excess over its Taylor part), and budget costs retraining time (a retrain restores the whole budget
    ``B`` at cost ``T``); so once the excess spent since the last rebuild reaches ``R * B / T``, with
    ``R`` the cost of a rebuild, paying for a rebuild is cheaper than continuing to pay in budget. Costs
    are counted, not timed, so results are reproducible: a rebuild is one Hessian, a retrain is one
    Hessian per Newton step of the last training.
    Independently of cost, it is rebuilt when drift made the last bound ``cache_refresh_ratio`` times its
    Taylor part, which keeps the stale step close to the exact Newton step (and so to retraining).

    Returns ``(result, new_cache, stale, excess, rebuilt)`` with the bookkeeping for the next call.
    """
    cfg, data = model.config, model._data
    row_weights_d = step_args[-1]
    rebuild = rebuild or _cache_needs_rebuild(model, need)
    if rebuild:
        cache, downdate_weights, excess = _build_cache(model, step_args[3]), jnp.zeros_like(row_weights_d), 0.0
    else:
        cache, downdate_weights, excess = model._cache, row_weights_d, model._cache_excess
    out = removal.cached_removal(
        *step_args, downdate_weights, model.perturbation, cfg.l2_reg, cache, data.data_norm, data.max_row_norm,
        loss=cfg.loss, update=cfg.update, bound=cfg.bound,
    )
    excess += max(float(out.remainder) - float(out.taylor), 0.0)
    stale = excess >= model.calibration.residual_budget / max(model._train_cost, 1.0)
    stale |= float(out.remainder) > cfg.refresh_ratio * float(out.taylor) + 1e-300
    return out, curvature.with_state(cache, out.state), stale, excess, rebuild


def remove(model: CertifiedModel, indices) -> tuple[CertifiedModel, RemovalReport]:
    """Removes rows (original indices) with one Newton step, or by retraining when the budget runs out.

    One Newton step ``w_new = w + H^{-1} Delta`` on the retained rows (THEORY Sec. 2, Guo et al. Alg. 1),
    its residual bounded by the model's ``bound`` (:mod:`certunlearn.removal`). The step is published only
    if the solve converged and the spent residual stays within the budget; otherwise the model is retrained
    on the retained rows with fresh noise (``on_exhausted="retrain"``) or :class:`BudgetExhaustedError` is
    raised (``"raise"``). A batch of m rows is one step (remove-m). Zero indices cost nothing.

    Args:
      model: the current model (left unchanged).
      indices: an int or 1-D array of original row indices, distinct and not yet removed.

    Returns:
      ``(new_model, report)``.
    """
    idx = _check_indices(indices, model)
    c = model.calibration
    if idx.size == 0:
        spent = model.ledger.residual_spent
        return model, RemovalReport(idx, 0.0, spent, c.residual_budget, c.epsilon_spent(spent), False)

    cfg, data = model.config, model._data
    keep = model.retained.copy()
    keep[idx] = False
    keep.setflags(write=False)
    # Pad the removed rows to a power-of-two bucket (weight 0) so batch sizes share compilations.
    bucket = 1 << (idx.size - 1).bit_length()
    rows = np.zeros(bucket, np.int64)
    rows[: idx.size] = idx
    row_weights = np.zeros(bucket)
    row_weights[: idx.size] = 1.0
    keep_d = data.weights(keep, cfg.dtype)
    rows_j, row_weights_d = jnp.asarray(rows), jnp.asarray(row_weights, cfg.dtype)

    start = time.perf_counter()
    cache, cache_stale, cache_book = None, False, {}
    step_args = (model.params, data.X, data.y, keep_d, rows_j, row_weights_d)
    need = bucket * curvature.columns_per_row(model.params.shape)
    use_cache = cfg.solver == "cached" and need <= _cache_columns(model)
    if use_cache and cfg.dtype == "float64":
        out, cache, cache_stale, excess, rebuilt = _cached_step_float64(model, step_args, need)
        if not rebuilt and _step_spent(model, out.solve_error, out.remainder, out.exact_residual) > c.residual_budget:
            # A fresh factorisation (an exact Newton step) may still fit where the stale one does not.
            out, cache, cache_stale, excess, _ = _cached_step_float64(model, step_args, need, rebuild=True)
        cache_book = dict(_cache_excess=excess)
        step = removal.NewtonStep(out.params, jnp.asarray(True), jnp.asarray(0), out.solve_error)
        terms = removal.ResidualTerms(out.solve_error, out.remainder, out.exact_residual)
    else:
        if use_cache:
            step, cache, cache_stale = _cached_step_pcg(model, step_args, need)
        else:
            if cfg.solver == "cg":
                cache = model._cache if model._cache is not None else _cg_preconditioner(model, keep)
            step = removal.newton_step(
                *step_args,
                model.perturbation,
                cfg.l2_reg,
                cfg.cg_rtol,
                cache if cfg.solver == "cg" else None,
                cfg.cg_error_ratio * model._last_remainder,
                loss=cfg.loss,
                solver="cg" if cfg.solver == "cg" else "cholesky",
                update=cfg.update,
                cg_maxiter=cfg.cg_maxiter,
            )
        terms = removal.residual_terms(
            _as64(model.params),
            _as64(step.params),
            data.X64,
            data.y64,
            data.weights(keep, jnp.float64),
            rows_j,
            jnp.asarray(row_weights),
            _as64(model.perturbation),
            cfg.l2_reg,
            data.data_norm,
            data.max_row_norm,
            loss=cfg.loss,
            update=cfg.update,
            bound=cfg.bound,
        )
    solve_error, remainder, exact = (float(t) for t in terms)
    seconds = time.perf_counter() - start
    step_bound, mode = _step_bound(cfg, solve_error, remainder, exact)
    new_spent = _step_spent(model, solve_error, remainder, exact)
    converged = bool(step.converged)
    diagnostics = dict(
        solve_error=solve_error,
        remainder=remainder,
        exact_residual=exact,
        solver_steps=int(step.steps),
        converged=converged,
        seconds=seconds,
    )

    if converged and new_spent <= c.residual_budget:
        ledger = model.ledger.after_removal(step_bound, idx.size, mode=mode)
        scale = remainder if math.isfinite(remainder) else (exact if math.isfinite(exact) else 0.0)
        new_model = dataclasses.replace(
            model, params=step.params, retained=keep, ledger=ledger, _cache=cache, _cache_stale=cache_stale,
            _last_remainder=scale, **cache_book,
        )
        report = RemovalReport(
            idx, step_bound, ledger.residual_spent, c.residual_budget, c.epsilon_spent(ledger.residual_spent),
            False, **diagnostics,
        )
        return new_model, report

    if cfg.on_exhausted == "raise":
        why = "the Newton solve did not converge" if not converged else (
            f"the spent residual would reach {new_spent:.4g} > budget {c.residual_budget:.4g}"
        )
        raise BudgetExhaustedError(
            f"cannot certify removing {idx.size} rows: {why}; retrain (on_exhausted='retrain') or raise sigma"
        )

    start = time.perf_counter()
    key, params, b, r0, steps = _train(data, cfg, c, model.key, keep, model.params)
    retrain_seconds = time.perf_counter() - start
    ledger = model.ledger.after_retrain(r0, idx.size)
    new_model = dataclasses.replace(
        model, params=params, perturbation=b, retained=keep, ledger=ledger, key=key, training_residual=r0,
        _cache=None, _cache_stale=False, _cache_excess=0.0, _train_cost=float(steps), _last_remainder=0.0,
    )
    report = RemovalReport(
        idx, r0, r0, c.residual_budget, c.epsilon_spent(r0), True, **diagnostics, retrain_seconds=retrain_seconds
    )
    return new_model, report
