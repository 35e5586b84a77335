"""Fit the perturbed objective ``L_b`` to a gradient-norm tolerance.

Two methods, both pure and jit-compiled, both reporting the final gradient norm (the *training
residual* ``||grad L_b(w*; D)||``, which :mod:`certunlearn.api` counts in the removal budget):

* ``"newton"``: damped Newton with an Armijo backtracking line search; each step solves with the dense
  Hessian (Cholesky) or with conjugate gradients on Hessian-vector products, optionally preconditioned
  by the Hessian of a row subsample on the data's principal directions
  (:class:`certunlearn.curvature.ProjectedPreconditioner`, rebuilt at every Newton step). Converges
  quadratically, so in float64 the residual reaches ~1e-12 in a handful of steps. The default.
* ``"lbfgs"``: ``optax.lbfgs`` with its zoom line search, for parameter counts where even CG-Newton is
  too expensive.

The objective is ``lambda n``-strongly convex, so both converge from any start; a retrain may therefore
warm-start from the current parameters (the certificate depends only on the final residual).

References:
  Nocedal & Wright, Numerical Optimization, 2nd ed., Ch. 3 and 7.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from certunlearn import curvature, hessian, objective, solvers
from certunlearn.losses import get_loss

Array = jax.Array

__all__ = ["TrainResult", "fit_params", "METHODS"]

METHODS = ("newton", "lbfgs")
#: Default rows of the projected CG preconditioner, in training and (:mod:`certunlearn.api`) removals.
PRECONDITIONER_ROWS = 8192
#: The projected preconditioner eigendecomposes a (d, d) Gram matrix; above this d, K-FAC or none.
PROJECTION_MAX_FEATURES = 4096
#: Training preconditions CG by default only from this ``n p`` on: below it a Hessian-vector product is
#: so cheap that compiling the preconditioner (~0.5 s) costs more than the iterations it saves.
PRECONDITION_MIN_WORK = 2**20


def _preconditioner_pays(X_shape, params_shape) -> bool:
    """Whether building the projected preconditioner at every Newton step (``m (r K)^2`` flops for the
    projected Hessian) costs less than the ~30 Hessian-vector products per step it saves (``2 n p`` each):
    true for softmax on Fashion-MNIST (8.5e9 against 2.8e10), false for its binary tasks (5e9 against
    5.6e8), where one HVP is cheap and ``r K = d``."""
    n, d = X_shape
    k = 1 if len(params_shape) == 1 else params_shape[1]
    p = d * k
    if d > PROJECTION_MAX_FEATURES or n * p < PRECONDITION_MIN_WORK:
        return False
    rk = curvature.projection_rank(d, k) * k
    return 60 * n * p > min(PRECONDITIONER_ROWS, n) * rk * rk


class TrainResult(NamedTuple):
    """Result of :func:`fit_params`.

    Attributes:
      params: the fitted parameters.
      grad_norm: ``||grad L_b(params; retained rows)||`` in the working dtype.
      steps: optimiser steps taken.
      converged: ``grad_norm <= tol`` and everything finite.
    """

    params: Array
    grad_norm: Array
    steps: Array
    converged: Array


def _norm(v):
    return jnp.sqrt(jnp.sum(v * v))


@functools.partial(jax.jit, static_argnames=("loss", "method", "solver", "max_steps", "preconditioner_rows"))
def fit_params(
    params0,
    X,
    y,
    weights,
    perturbation,
    l2_reg,
    tol,
    *,
    loss: str,
    method: str = "newton",
    solver: str = "cholesky",
    max_steps: int = 100,
    preconditioner_rows: int | None = None,
) -> TrainResult:
    """Minimises ``L_b(w) = sum_i weights_i l(x_i w, y_i) + lambda n/2 ||w||^2 + <b, w>`` (sum convention).

    Args:
      params0: starting point, (d,) or (d, K).
      X, y, weights: data, labels and the 0/1 retained-row mask (static shapes).
      perturbation: the noise ``b``.
      l2_reg: ``lambda`` (traced, so sweeps over it do not recompile).
      tol: stop when ``||grad L_b|| <= tol`` (absolute, sum convention).
      loss: loss name. method: "newton" or "lbfgs". solver: "cholesky" or "cg" for Newton's steps.
      max_steps: iteration cap.
      preconditioner_rows: for Newton with "cg": precondition CG with the projected Hessian of this many
        rows, taken at a fixed stride through ``X`` (deterministic; any subsample is valid, since a
        preconditioner changes the speed, not the solution); 0: no preconditioner; None (default):
        :data:`PRECONDITIONER_ROWS` rows where that pays (:func:`_preconditioner_pays`), else none.

    Returns:
      :class:`TrainResult`.
    """
    kw = dict(loss=loss, l2_reg=l2_reg)
    fun = lambda w: objective.objective(w, X, y, weights, perturbation, **kw)
    grad = lambda w: objective.gradient(w, X, y, weights, perturbation, **kw)

    if method == "newton":
        if preconditioner_rows is None:
            preconditioner_rows = PRECONDITIONER_ROWS if _preconditioner_pays(X.shape, params0.shape) else 0
        use_pre = solver == "cg" and preconditioner_rows > 0
        if use_pre:
            n = X.shape[0]
            sub = jnp.arange(min(preconditioner_rows, n)) * (n // min(preconditioner_rows, n))
            X_sub, w_sub = X[sub], weights[sub]
            scale = jnp.sum(weights) / jnp.maximum(jnp.sum(w_sub), 1.0)
            k = 1 if params0.ndim == 1 else params0.shape[1]
            basis = curvature.projection_basis(X_sub, w_sub, rank=curvature.projection_rank(X.shape[1], k))

        def direction(w, g):
            if solver == "cholesky":
                H = hessian.dense_hessian(w, X, y, weights, **kw)
                return solvers.cholesky_solve(H, -g.ravel()).x.reshape(w.shape)
            matvec = hessian.glm_hvp_operator(w, X, weights, **kw)
            precond = None
            if use_pre:
                pre = curvature.projected_preconditioner_at(basis, w, X_sub, w_sub, scale,
                                                            l2_reg * jnp.sum(weights), loss=loss)
                precond = lambda v: curvature.apply_projected_inverse(pre, v)
            return solvers.conjugate_gradient(matvec, -g, rtol=1e-8, maxiter=10 * g.size,
                                              preconditioner=precond).x

        def body(state):
            w, g, f, k = state
            d = direction(w, g)
            slope = jnp.sum(g * d)
            d, slope = jax.lax.cond(
                jnp.isfinite(slope) & (slope < 0), lambda: (d, slope), lambda: (-g, -jnp.sum(g * g))
            )

            # Armijo on f, or on ||g||^2 (for which the Newton direction is also a descent direction):
            # near the optimum f stops resolving the decrease in floating point, ||g|| does not.
            gg = jnp.sum(g * g)

            def accept(t, f_new, g_new):
                return (f_new <= f + 1e-4 * t * slope) | (jnp.sum(g_new * g_new) <= (1 - 1e-4 * t) * gg)

            def ls_cond(s):
                t, f_new, g_new, j = s
                return ~accept(t, f_new, g_new) & (j < 60)

            def ls_body(s):
                t, _, _, j = s
                t = 0.5 * t
                return t, fun(w + t * d), grad(w + t * d), j + 1

            t, f_new, g_new, _ = jax.lax.while_loop(ls_cond, ls_body, (1.0, fun(w + d), grad(w + d), 0))
            return w + t * d, g_new, f_new, k + 1

        def cond(state):
            _, g, f, k = state
            return (_norm(g) > tol) & (k < max_steps) & jnp.isfinite(f)

        w, g, _, k = jax.lax.while_loop(cond, body, (params0, grad(params0), fun(params0), 0))
    elif method == "lbfgs":
        opt = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(fun)

        def body(state):
            w, opt_state, _, k = state
            value, g = value_and_grad(w, state=opt_state)
            updates, opt_state = opt.update(g, opt_state, w, value=value, grad=g, value_fn=fun)
            w = optax.apply_updates(w, updates)
            return w, opt_state, grad(w), k + 1

        def cond(state):
            _, _, g, k = state
            return (_norm(g) > tol) & (k < max_steps) & jnp.all(jnp.isfinite(g))

        w, _, g, k = jax.lax.while_loop(cond, body, (params0, opt.init(params0), grad(params0), 0))
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    gn = _norm(g)
    converged = (gn <= tol) & jnp.all(jnp.isfinite(w))
    return TrainResult(params=w, grad_norm=gn, steps=jnp.asarray(k, jnp.int32), converged=converged)
