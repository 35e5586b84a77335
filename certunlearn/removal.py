"""Newton-step removal and proven bounds on the gradient residual it leaves.

Removing the rows ``U`` (``m = |U|``) from ``D`` leaves ``D' = D \\ U``. At the current parameters ``w``
(the minimiser of ``L_b`` on ``D`` up to a residual ``g_prev = grad L_b(w; D)``), with
``H = grad^2 L(w; D')`` the Hessian on the *retained* rows:

* ``update="guo"`` (Guo et al. 2020, Alg. 1): ``u = H^{-1} Delta`` with
  ``Delta = sum_{j in U} (lambda w + grad l(w; x_j, y_j))``. The new residual is
  ``r = g_prev + (H u - Delta) + R(u)``, so residuals *accumulate* across removals.
* ``update="gradient"``: ``u = -H^{-1} g`` with ``g = grad L_b(w; D')`` computed exactly. The new residual
  is ``r = (H u + g) + R(u)``; the step also corrects what earlier steps left (THEORY.md Sec. 5).

``w_new = w + u``, and ``R(u) = int_0^1 (H(w + t u) - H(w)) u dt`` is the Taylor remainder. With
``delta_i = x_i^T u`` (the change of the i-th predictor) and ``gamma`` the Lipschitz constant of the
loss curvature (:mod:`certunlearn.losses`), ``||H(w + t u) - H(w)|| <= gamma t sum_i ||x_i||^2 ||delta_i||``
and, row by row, ``||(A(z_i + t delta_i) - A(z_i)) delta_i|| <= gamma t ||delta_i||^2``. Integrating
``t`` over [0, 1] gives the two bounds used here (both proven upper bounds; the integral form gives the
factor 1/2 that Guo et al.'s mean-value argument does not):

* ``worst-case`` (Guo Thm. 1 form): ``||R|| <= gamma/2 * rho^3 * n' * ||u||^2`` with ``rho >= max ||x_i||``
  and ``n'`` the number of retained rows. No pass over the data.
* ``data-dependent`` (Guo Cor. 1, tightened): ``||R|| <= gamma/2 * ||X'||_2 * sqrt(sum_i ||delta_i||^4)``
  with ``||X'||_2 <= ||X||_2`` bounded *from above* by :func:`spectral_norm_upper_bound` (an exact
  float64 eigenvalue plus a rounding margin, never power iteration, which under-estimates).
* ``exact``: ``||grad L_b(w_new; D')||`` computed directly, O(nd).

The solver error ``||H u - Delta||`` (or ``||H u + g||``) is recomputed independently with Hessian-vector
products on the *published* parameters, so an inexact or float32 solve is paid for in the certificate.

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models.
  ICML 2020, arXiv:1911.03030 (Alg. 1, Thm. 1, Cor. 1).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certunlearn import curvature, hessian, objective, solvers
from certunlearn.losses import get_loss

Array = jax.Array

__all__ = [
    "BOUNDS",
    "UPDATES",
    "SOLVERS",
    "NewtonStep",
    "ResidualTerms",
    "newton_step",
    "cached_newton_step",
    "cached_removal",
    "CachedRemoval",
    "residual_terms",
    "worst_case_remainder",
    "data_dependent_remainder",
    "spectral_norm_upper_bound",
]

BOUNDS = ("worst-case", "data-dependent", "exact")
UPDATES = ("guo", "gradient")
SOLVERS = ("cholesky", "cached", "cg")


class NewtonStep(NamedTuple):
    """Output of :func:`newton_step`: new parameters and the solve's diagnostics."""

    params: Array
    converged: Array
    steps: Array
    solver_residual: Array


class ResidualTerms(NamedTuple):
    """The float64 terms of a removal's residual, all norms (see module docstring).

    Attributes:
      solve_error: ``||H u - Delta||`` (guo) or ``||H u + g||`` (gradient) for the published step ``u``.
      remainder: the chosen proven bound on ``||R(u)||`` (0 for ``bound="exact"``).
      exact_residual: ``||grad L_b(w_new; D')||`` when ``bound="exact"``, else NaN (not computed).
    """

    solve_error: Array
    remainder: Array
    exact_residual: Array


def _norm(v):
    return jnp.sqrt(jnp.sum(v * v))


def _newton_rhs(params, X, y, keep, rows, row_weights, perturbation, l2_reg, *, loss, update):
    """``Delta`` for guo (solve ``H u = Delta``) or ``-grad L_b(w; D')`` for gradient.

    ``Delta`` is computed from the removed rows alone (``X[rows]`` with 0/1 ``row_weights``; padding
    rows have weight 0), O(m d) instead of a pass over all n rows.
    """
    if update == "guo":
        return objective.removed_gradient(params, X[rows], y[rows], row_weights, loss=loss, l2_reg=l2_reg)
    return -objective.gradient(params, X, y, keep, perturbation, loss=loss, l2_reg=l2_reg)


@functools.partial(jax.jit, static_argnames=("loss", "solver", "update", "cg_maxiter"))
def newton_step(
    params,
    X,
    y,
    keep,
    rows,
    row_weights,
    perturbation,
    l2_reg,
    cg_rtol=1e-10,
    preconditioner: curvature.ProjectedPreconditioner | curvature.KroneckerPreconditioner
    | curvature.CurvatureCache | None = None,
    cg_atol=0.0,
    *,
    loss: str,
    solver: str = "cholesky",
    update: str = "guo",
    cg_maxiter: int | None = None,
) -> NewtonStep:
    """One Newton removal step on the retained rows (sum convention, module docstring).

    Args:
      params: current parameters ``w``.
      X, y: all training rows (static shape).
      keep: 0/1 mask of the rows retained *after* this removal (``D'``).
      rows, row_weights: indices of the rows removed by this step (``U``) and 0/1 weights; pad ``rows``
        to a fixed bucket size with weight-0 entries so that batch sizes share one compilation.
      perturbation: the noise ``b`` of the current training run.
      l2_reg: ``lambda``.
      cg_rtol, cg_atol: relative and absolute tolerance of conjugate gradients (it stops at the larger;
        ``cg_atol`` is traced, so a tolerance that changes per removal does not recompile).
      preconditioner: for "cg", optional: a :class:`~certunlearn.curvature.ProjectedPreconditioner`,
        :class:`~certunlearn.curvature.KroneckerPreconditioner` or
        :class:`~certunlearn.curvature.CurvatureCache`, whose inverse is used.
      loss: loss name. solver: "cholesky" (dense Hessian) or "cg" (Hessian-vector products).
      update: "guo" or "gradient".
      cg_maxiter: CG iteration cap (default ``10 p``).

    Returns:
      :class:`NewtonStep` with ``params = w + u``.
    """
    rhs = _newton_rhs(params, X, y, keep, rows, row_weights, perturbation, l2_reg, loss=loss, update=update)
    if solver == "cholesky":
        H = hessian.dense_hessian(params, X, y, keep, loss=loss, l2_reg=l2_reg)
        result = solvers.cholesky_solve(H, rhs.ravel())
        u = result.x.reshape(params.shape)
    elif solver == "cg":
        matvec = hessian.glm_hvp_operator(params, X, keep, loss=loss, l2_reg=l2_reg)
        precond = None
        if preconditioner is not None:
            precond = lambda v: curvature.apply_preconditioner(preconditioner, v)
        result = solvers.conjugate_gradient(matvec, rhs, rtol=cg_rtol, atol=cg_atol, maxiter=cg_maxiter,
                                            preconditioner=precond)
        u = result.x
    else:
        raise ValueError(f"newton_step solver must be 'cholesky' or 'cg', got {solver!r}")
    return NewtonStep(
        params=params + u, converged=result.converged, steps=result.steps, solver_residual=result.residual
    )


@functools.partial(jax.jit, static_argnames=("loss", "update", "cg_maxiter"))
def cached_newton_step(
    params,
    X,
    y,
    keep,
    rows,
    row_weights,
    downdate_weights,
    perturbation,
    l2_reg,
    cache: curvature.CurvatureCache,
    cg_rtol=1e-10,
    *,
    loss: str,
    update: str = "guo",
    cg_maxiter: int = 50,
) -> tuple[NewtonStep, curvature.CacheState]:
    """Newton removal step with a cached, downdated factorisation as CG preconditioner.

    Downdates ``cache`` by the rows ``X[rows]`` (``downdate_weights``: 0 where the cache was just built
    without them), then solves ``H(w; D') u = Delta`` by conjugate gradients on exact Hessian-vector
    products at the current ``w``, started at ``M^{-1} Delta`` and preconditioned by ``M^{-1}``
    (:mod:`certunlearn.curvature`). Cost: ``O(p^2 m)`` for the downdate plus ``O(n d + p^2)`` per CG
    iteration, instead of ``O(n d^2)``.

    Returns:
      ``(step, part)``; ``curvature.with_state(cache, part)`` is the downdated cache. Its drift record
      is marked unusable (:func:`curvature.forget_drift`): this step does not compute ``X u``.
    """
    cache = curvature.downdate(cache, X[rows], downdate_weights, loss=loss)
    rhs = _newton_rhs(params, X, y, keep, rows, row_weights, perturbation, l2_reg, loss=loss, update=update)
    precond = lambda v: curvature.apply_inverse(cache, v)
    matvec = hessian.glm_hvp_operator(params, X, keep, loss=loss, l2_reg=l2_reg)
    result = solvers.conjugate_gradient(
        matvec, rhs, x0=precond(rhs), rtol=cg_rtol, maxiter=cg_maxiter, preconditioner=precond
    )
    step = NewtonStep(
        params=params + result.x, converged=result.converged, steps=result.steps, solver_residual=result.residual
    )
    return step, curvature.state(curvature.forget_drift(cache))


class CachedRemoval(NamedTuple):
    """Output of :func:`cached_removal` (float64 throughout).

    Attributes:
      params: ``w + u``. state: the downdated cache's changed fields
        (``curvature.with_state(cache, state)`` is the downdated cache).
      solve_error: ``||M u - rhs||`` with ``M = H_ref - V V^T`` the cached matrix (rounding only).
      remainder: proven bound on ``||int_0^1 (H(w + t u) - M) u dt||``: Taylor remainder, parameter drift
        since the factorisation and the regulariser change, plus a floating-point margin.
      taylor: the Taylor part alone, ``gamma/2 ||X||_2 sqrt(sum ||delta_i||^4)`` (refresh heuristic).
      exact_residual: ``||grad L_b(w_new; D')||`` when ``bound="exact"``, else NaN.
    """

    params: Array
    state: curvature.CacheState
    solve_error: Array
    remainder: Array
    taylor: Array
    exact_residual: Array


@functools.partial(jax.jit, static_argnames=("loss", "update", "bound"))
def cached_removal(
    params,
    X,
    y,
    keep,
    rows,
    row_weights,
    downdate_weights,
    perturbation,
    l2_reg,
    cache: curvature.CurvatureCache,
    data_norm,
    max_row_norm,
    *,
    loss: str,
    update: str = "guo",
    bound: str = "data-dependent",
) -> CachedRemoval:
    """A certified removal with a cached factorisation and at most one pass over the data (float64).

    Downdates the cached ``M = H_ref - V V^T`` by the removed rows (:mod:`certunlearn.curvature`),
    takes the step ``u = M^{-1} rhs`` (``rhs = Delta`` or ``-g`` as in :func:`newton_step`) and bounds
    the residual it leaves *without* the exact Hessian. With ``a_i = x_i^T (w - w_ref)`` (drift since the
    factorisation) and ``delta_i = x_i^T u``, the curvature at ``w + t u`` differs from the one cached
    by ``||A(z_i(w + t u)) - A(z_i(w_ref))|| <= gamma (||a_i|| + t ||delta_i||)``, so::

        r_new = r_prev + (M u - rhs) + int_0^1 (H(w + t u) - M) u dt,
        ||int ...|| <= gamma ||X'||_2 sqrt(sum_i ((||a_i|| + ||delta_i||/2) ||delta_i||)^2)
                       + lambda |n' - n_ref| ||u|| + (rounding margin)

    (``r_prev`` is the previous residual for ``update="guo"`` and absent for ``"gradient"``). The only
    O(nd) work is ``X u``, one pass (``bound="data-dependent"``); ``X (w - w_ref)`` is the sum of the
    earlier steps' ``X u``, kept in the cache with a bound on its rounding
    (:func:`certunlearn.curvature.drift_rounding`). ``"worst-case"`` replaces both by
    ``||a_i|| <= rho ||w - w_ref||``, ``||delta_i|| <= rho ||u||``, with no pass, and ``"exact"`` computes
    the exact residual (two passes).
    """
    loss_ = get_loss(loss)
    gamma = loss_.gamma
    cache = curvature.downdate(cache, X[rows], downdate_weights, loss=loss)
    rhs = _newton_rhs(params, X, y, keep, rows, row_weights, perturbation, l2_reg, loss=loss, update=update)
    params_new = params + curvature.apply_inverse(cache, rhs)
    u = params_new - params  # the published step, after rounding
    solve_error = _norm(curvature.apply_matrix(cache, u) - rhs)
    drift = params - cache.params_ref
    n_keep = jnp.sum(keep)
    u_norm = _norm(u)
    reg_term = l2_reg * jnp.abs(n_keep - cache.num_ref) * u_norm
    # Floating point: M is the computed factor's product, not the exact Hessian at w_ref; the Gram and
    # Cholesky rounding is at most ~(n + p) eps ||H_ref|| (Higham, Thm. 10.3), charged on ||u||.
    curv_max = objective.CURVATURE_MAX[loss_.name]
    x_norm_sq = jnp.where(jnp.isfinite(data_norm), data_norm**2, cache.num_ref * max_row_norm**2)
    h_norm = curv_max * x_norm_sq + l2_reg * cache.num_ref
    eps = jnp.finfo(X.dtype).eps
    margin = 8.0 * (X.shape[0] + params.size) * eps * h_norm * u_norm
    nan = jnp.asarray(jnp.nan, X.dtype)
    if bound == "worst-case":
        # ||x_i|| <= rho, ||a_i|| <= rho ||w - w_ref||, ||delta_i|| <= rho ||u||.
        a, dl = max_row_norm * _norm(drift), max_row_norm * u_norm
        taylor = 0.5 * gamma * max_row_norm * n_keep * dl * dl
        stale = gamma * max_row_norm * n_keep * (a + 0.5 * dl) * dl
        state = curvature.state(curvature.forget_drift(cache))
        return CachedRemoval(params_new, state, solve_error, stale + reg_term + margin, taylor, nan)
    if bound == "data-dependent":
        # The one pass: delta = X u. The drift a_i = x_i^T (w - w_ref) is the running sum of the earlier
        # steps' X u (cache.drift_logits), so it needs no second pass. Both are computed in floating
        # point; each row's error is added to its norm, so a_hat_i >= ||a_i|| and dl_hat_i >= ||delta_i||.
        d = X.shape[1]
        step_logits = X @ u
        ur = jnp.finfo(X.dtype).eps / 2
        dl = objective._rows(step_logits) + 2 * objective._gamma(d + 2, ur) * max_row_norm * u_norm
        a = objective._rows(cache.drift_logits) + curvature.drift_rounding(cache, d, max_row_norm)
        slack = 1 + 2 * objective._gamma(X.shape[0] + 8, ur)  # the sums and square roots below
        taylor = 0.5 * gamma * data_norm * jnp.sqrt(jnp.sum(keep * dl**4)) * slack
        stale = gamma * data_norm * jnp.sqrt(jnp.sum(keep * ((a + 0.5 * dl) * dl) ** 2)) * slack
        state = curvature.state(curvature.track_drift(cache, step_logits, u_norm))
        return CachedRemoval(params_new, state, solve_error, stale + reg_term + margin, taylor, nan)
    if bound == "exact":
        exact = objective.gradient_norm_upper_bound(params_new, X, y, keep, perturbation, loss=loss, l2_reg=l2_reg)
        zero = jnp.zeros_like(u_norm)
        return CachedRemoval(params_new, curvature.state(curvature.forget_drift(cache)), solve_error, zero, zero,
                             exact)
    raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")


def worst_case_remainder(step_norm, num_retained, *, gamma, max_row_norm=1.0):
    """``gamma/2 * rho^3 * n' * ||u||^2 >= ||R(u)||``: Guo et al. Thm. 1 in integral form."""
    return 0.5 * gamma * max_row_norm**3 * num_retained * step_norm**2


def data_dependent_remainder(X, keep, step, *, gamma, data_norm, max_row_norm=None):
    """``gamma/2 * ||X'||_2 * sqrt(sum_{i in D'} ||x_i^T u||^4) >= ||R(u)||`` (Guo et al. Cor. 1, tightened).

    ``data_norm`` must be an *upper bound* on ``||X'||_2``; any bound on the full ``||X||_2`` serves,
    since removing rows cannot increase the spectral norm. With ``max_row_norm`` (``>= max ||x_i||``)
    the floating-point computation is charged too: each computed ``||x_i^T u||`` is raised by its
    rounding error (``gamma_{d+2} max_row_norm ||u||``, doubled; an absolute term, since cancellation
    makes it unbounded relative to ``x_i^T u``) and the sums and roots by a relative ``2 gamma_{n+8}``, so
    the result bounds the exact value, not just the computed one.
    """
    delta = objective._rows(X @ step)
    slack = 1.0
    if max_row_norm is not None:
        ur = jnp.finfo(X.dtype).eps / 2
        delta = delta + 2 * objective._gamma(X.shape[1] + 2, ur) * max_row_norm * _norm(step)
        slack = 1 + 2 * objective._gamma(X.shape[0] + 8, ur)
    sq = delta * delta
    return 0.5 * gamma * data_norm * jnp.sqrt(jnp.sum(keep * sq * sq)) * slack


def _solve_rounding(params_old, params_new, u, rhs, X, y, keep, rows, row_weights, perturbation, l2_reg, *,
                    loss, update):
    """A bound on the rounding error of the computed ``||H u - Delta||`` against its exact value at the
    published step (:func:`certunlearn.objective.hvp_rounding_bound` and ``gradient_rounding_bound``).

    It also charges ``u = params_new - params_old`` being rounded (``||du|| <= u_r ||u||``, so
    ``||H du|| <= u_r ||H||_2 ||u||`` with ``||H||_2 <= A_max sum_i ||x_i||^2 + lambda n``).
    """
    ur = objective._unit_roundoff(X.dtype)
    hvp_err, hu_norm = objective.hvp_rounding_bound(params_old, X, keep, u, loss=loss, l2_reg=l2_reg)
    if update == "gradient":
        rhs_err = objective.gradient_rounding_bound(params_old, X, y, keep, perturbation, loss=loss, l2_reg=l2_reg)
    else:
        rhs_err = objective.gradient_rounding_bound(params_old, X[rows], y[rows], row_weights,
                                                    jnp.zeros_like(params_old), loss=loss, l2_reg=l2_reg)
    n = jnp.sum(keep)
    h_norm = objective.CURVATURE_MAX[get_loss(loss).name] * jnp.sum(keep * jnp.sum(X * X, axis=1)) + l2_reg * n
    step_err = 2 * ur * h_norm * _norm(u)
    total = hvp_err + rhs_err + step_err
    return total + 2 * objective._gamma(u.size + 2, ur) * (hu_norm + _norm(rhs) + total)


@functools.partial(jax.jit, static_argnames=("loss", "update", "bound"))
def residual_terms(
    params_old,
    params_new,
    X,
    y,
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
) -> ResidualTerms:
    """The residual terms of the step ``params_old -> params_new``; call it with float64 arrays.

    ``u = params_new - params_old`` is the step that was actually published (after rounding), so the
    solve error and the remainder bound hold for the published parameters.
    """
    gamma = get_loss(loss).gamma
    u = params_new - params_old
    rhs = _newton_rhs(params_old, X, y, keep, rows, row_weights, perturbation, l2_reg, loss=loss, update=update)
    Hu = hessian.glm_hvp(params_old, X, y, keep, u, loss=loss, l2_reg=l2_reg)
    solve_error = _norm(Hu - rhs) + _solve_rounding(params_old, params_new, u, rhs, X, y, keep, rows, row_weights,
                                                    perturbation, l2_reg, loss=loss, update=update)
    nan = jnp.asarray(jnp.nan, solve_error.dtype)
    zero = jnp.zeros_like(solve_error)
    # The remainder is computed in floating point too: a relative 2 gamma_{n+d} covers its sums and norms.
    slack = 1 + 2 * objective._gamma(X.shape[0] + X.shape[1] + 4, objective._unit_roundoff(X.dtype))
    if bound == "worst-case":
        remainder = worst_case_remainder(_norm(u), jnp.sum(keep), gamma=gamma, max_row_norm=max_row_norm)
        return ResidualTerms(solve_error, slack * remainder, nan)
    if bound == "data-dependent":
        remainder = data_dependent_remainder(X, keep, u, gamma=gamma, data_norm=data_norm, max_row_norm=max_row_norm)
        return ResidualTerms(solve_error, remainder, nan)
    if bound == "exact":
        exact = objective.gradient_norm_upper_bound(params_new, X, y, keep, perturbation, loss=loss, l2_reg=l2_reg)
        return ResidualTerms(solve_error, zero, exact)
    raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")


def spectral_norm_upper_bound(X) -> float:
    """A proven upper bound on ``||X||_2`` (largest singular value), computed in float64 on the host.

    ``lambda_max(X^T X)`` (or of ``X X^T``, whichever is smaller) by a symmetric eigensolver, plus a
    margin covering the rounding of the Gram product (``|fl(G) - G| <= k eps |X|^T |X|``, so
    ``||fl(G) - G||_2 <= k eps ||X||_F^2``) and of the eigensolver (``O(k eps ||G||_2)``). Falls back to
    the Frobenius norm, also an upper bound, when both dimensions exceed 8192.

    >>> import numpy as np
    >>> X = np.diag([3.0, 4.0])
    >>> 4.0 <= spectral_norm_upper_bound(X) <= 4.0 * (1 + 1e-9)
    True
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    frob_sq = float(np.sum(X * X))
    if min(n, d) > 8192:
        return math.sqrt(frob_sq)
    gram = X.T @ X if d <= n else X @ X.T
    k = max(n, d)
    lam = float(np.linalg.eigvalsh(gram)[-1])
    eps = np.finfo(np.float64).eps
    margin = 4 * k * eps * frob_sq + 4 * gram.shape[0] * eps * abs(lam)
    return min(math.sqrt(max(lam, 0.0) + margin), math.sqrt(frob_sq) * (1 + 4 * k * eps))
