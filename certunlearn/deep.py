"""Certified unlearning for deep networks: a damped Newton step on the retained rows (Zhang et al. 2024).

The model is any pair of a params pytree ``w`` and a pure ``apply(w, X) -> logits``. The objective is
the regularised empirical risk in the **sum convention** (THEORY.md Sec. 1) over the ``n'`` rows
*retained after* the removal (``D'``)::

    F(w) = sum_{i in D'} l(apply(w, X)_i, y_i) + (lambda n' / 2) ||w||^2,

with ``l`` the softmax cross-entropy (integer labels) or the logistic loss (labels +-1, one logit).
Removing the rows ``U`` (remove-m) publishes one damped Newton step from the current parameters plus
Gaussian output noise (Zhang et al., Sec. 3; the paper writes ``lambda`` for our ``damping``)::

    g     = grad F(w)                         (exact, on the retained rows: a non-converged w is fine)
    s     ~ (H + mu n' I)^{-1} g,  H = grad^2 F(w)   (CG, LiSSA or a dense Cholesky, on HVPs)
    w_u   = w - s                              (the "step"; never publish it)
    w_pub = w_u + N(0, sigma^2 I),   sigma = sigma_for_budget(Delta, epsilon, delta)

``mu`` (``damping``) is per retained row like ``lambda``: the solve uses ``H + mu n' I`` (sum
convention), i.e. the paper's local convex approximation ``H + mu I`` of the mean objective. If
``||w_u - w*|| <= Delta`` for the retrained model ``w*`` then ``w_u + N(0, sigma^2 I)`` and
``w* + N(0, sigma^2 I)`` are (epsilon, delta)-indistinguishable (the Gaussian mechanism with L2
sensitivity ``Delta``; calibrated exactly with :mod:`certunlearn.calibration`). Everything rests on
``Delta``, and for a network every ``Delta`` rests on assumptions. Two are implemented (``BOUNDS``):

* ``"local"`` (default; an a-posteriori bound, derived here, tighter and checkable). With the *exact*
  gradient residual ``rho = ||grad F(w_u)||`` (float64, one pass; it contains the damping bias, the
  solver error and the Taylor remainder, so nothing is left out), ``m = lambda_min(grad^2 F(w_u)) > 0``
  and ``M`` a Lipschitz constant of ``grad^2 F`` on the ball ``B = B(w_u, m / M)``: if ``m^2 > 2 M rho``,
  then ``F`` has exactly one stationary point ``w*`` in ``B`` (a strict local minimiser) and::

      ||w_u - w*|| <= Delta = 2 rho / (m + sqrt(m^2 - 2 M rho))       (= rho / m for M = 0).

  Proof: on ``B``, ``lambda_min(grad^2 F(x)) >= m - M ||x - w_u|| > 0`` (Weyl), so ``F`` is strictly
  convex there and has at most one stationary point. Along a segment from ``w_u`` of length ``d``,
  ``<grad F(x) - grad F(w_u), x - w_u> >= (m - M d / 2) d^2``. Minimise ``F`` over the closed ball of
  radius ``t`` with ``Delta < t < m / M``; were the minimiser ``x`` on the sphere, the KKT condition
  ``grad F(x) = -c (x - w_u)``, ``c >= 0``, would give ``(m - M t / 2) t^2 <= rho t``, false for such
  ``t``: so it is interior, a stationary point, and ``(m - M d / 2) d <= rho`` with ``d < m / M`` gives
  ``d <= Delta``. (A Newton-Kantorovich-type argument; Nesterov, Lectures on Convex Optimization,
  Thm. 1.2.5 style.)

* ``"worst-case"`` (Zhang et al., Thm. 3.4, with the solver error added): with the parameter norm
  constraint ``||w||, ||w*|| <= C`` (``norm_radius``; train with it) and ``(H + mu n' I) s = g + e``,
  ``w_u - w* = (H + mu n' I)^{-1} [(mu n' I + H - H_bar)(w - w*) - e]`` where ``H_bar`` averages the
  Hessian over the segment, ``||H - H_bar|| <= M ||w - w*|| / 2`` and ``||w - w*|| <= 2C``, so::

      Delta = (2C (M C + mu n') + ||e||) / (mu n' + lambda_min(H)),   if mu n' + lambda_min(H) > 0.

  It does not shrink with the number removed and is never much below ``2C``; the trivial
  ``||w_u|| + C`` (same assumption) is also computed and the smaller one is used.

What is proven and what is assumed (each certificate lists its own, see :class:`DeepCertificate`):
``rho``, ``||e||``, ``||s||`` and ``||w||`` are computed (float64, exact up to rounding).
``lambda_min`` is exact (dense float64 eigendecomposition) for small networks and a Lanczos estimate on
HVPs otherwise, which approaches ``lambda_min`` from *above* (optimistic). ``M`` is never proven for a
network: it is user-supplied or estimated from finite differences of HVPs (a lower estimate of the true
supremum). And "the retrained model" must be the local minimiser that the bound talks about: retraining
a non-convex net from a new initialisation can land in another basin, which no such bound covers.
A certificate is issued only if the solver converged and the local-convexity checks pass; otherwise
:func:`unlearn` raises :class:`certunlearn.api.CertificationError` (or, with ``on_failure="report"``,
returns the step with ``certified=False``, ``sigma = 0`` and ``epsilon = inf``).

Inverse-HVP solvers (``SOLVERS``): ``"cg"`` (:func:`certunlearn.solvers.conjugate_gradient` on
forward-over-reverse HVPs), ``"lissa"`` (:func:`lissa`, Agarwal et al. 2017, full-batch or on
minibatches of the retained rows) and ``"dense"`` (float64 Hessian + Cholesky; small networks).
Shapes are static (a retained-row weight vector, never slicing), so a sequence of removals compiles once.

References:
  B. Zhang, Y. Dong, T. Wang, J. Li. Towards Certified Unlearning for Deep Neural Networks. ICML 2024,
  arXiv:2408.00920 (Thm. 3.4: the damped-Newton approximation error; Sec. 3.3: LiSSA).
  N. Agarwal, B. Bullins, E. Hazan. Second-Order Stochastic Optimization for Machine Learning in Linear
  Time. JMLR 2017, arXiv:1602.03943 (LiSSA).
  C. Guo et al. Certified Data Removal from Machine Learning Models. ICML 2020, arXiv:1911.03030.
  B. Balle, Y.-X. Wang. Improving the Gaussian Mechanism for Differential Privacy. ICML 2018,
  arXiv:1805.06530.
  B. A. Pearlmutter. Fast exact multiplication by the Hessian. Neural Computation 1994.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from certunlearn import calibration as calib
from certunlearn import solvers
from certunlearn.api import CertificationError

Array = jax.Array

__all__ = [
    "BOUNDS",
    "CURVATURES",
    "LOSSES",
    "OPTIMIZERS",
    "SOLVERS",
    "DeepCertificate",
    "DeepConstant",
    "DeepUnlearnResult",
    "EigenEstimate",
    "TrainResult",
    "accuracy",
    "dense_hessian",
    "estimate_hessian_lipschitz",
    "extreme_eigenvalues",
    "gradient",
    "hvp",
    "lanczos",
    "lissa",
    "local_distance_bound",
    "newton_step",
    "objective",
    "train",
    "unlearn",
    "worst_case_distance_bound",
]

LOSSES = ("softmax", "logistic")
SOLVERS = ("cg", "lissa", "dense")
BOUNDS = ("local", "worst-case")
CURVATURES = ("auto", "dense", "lanczos")
OPTIMIZERS = ("adam", "sgd", "lbfgs")
ON_FAILURE = ("raise", "report")
_DENSE_LIMIT = 1500  # curvature="auto": dense float64 eigendecomposition up to this many parameters.


# ----------------------------------------------------------------------------------------------------
# The objective, its gradient and Hessian-vector products (pure, jitted; ``apply`` is static).


def _per_example(loss: str, logits, y):
    if loss == "softmax":
        labels = y.astype(jnp.int32)
        return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    z = logits.reshape(logits.shape[0])
    return jnp.logaddexp(0.0, -y.astype(z.dtype) * z)


def _sq_norm(tree):
    return sum(jnp.sum(leaf * leaf) for leaf in jax.tree_util.tree_leaves(tree))


def _objective(apply, params, X, y, weights, l2_reg, loss):
    n = jnp.sum(weights)
    data = jnp.sum(weights * _per_example(loss, apply(params, X), y))
    return data + 0.5 * l2_reg * n * _sq_norm(params)


@functools.partial(jax.jit, static_argnames=("apply", "loss"))
def objective(apply: Callable, params, X, y, weights, *, l2_reg, loss: str = "softmax") -> Array:
    """The regularised empirical risk, sum convention, over the rows with weight 1.

    ``F(w) = sum_i weights_i l(apply(w, X)_i, y_i) + (lambda n' / 2) ||w||^2``, ``n' = sum_i weights_i``.

    Args:
      apply: ``apply(params, X) -> logits`` (``(n, K)`` for softmax, ``(n,)`` or ``(n, 1)`` for logistic).
      params: the parameter pytree ``w``.
      X, y: all rows (static shape) and their labels (ints for softmax, +-1 for logistic).
      weights: ``(n,)`` 0/1 retained-row mask (floats).
      l2_reg: ``lambda`` (per retained row).
      loss: "softmax" or "logistic".

    Returns:
      The scalar ``F(w)``.

    >>> import jax.numpy as jnp
    >>> apply = lambda w, X: X @ w
    >>> float(objective(apply, jnp.zeros((2, 3)), jnp.eye(2), jnp.array([0, 2]), jnp.ones(2), l2_reg=0.1))
    2.1972245773362196
    """
    return _objective(apply, params, X, y, weights, l2_reg, loss)


@functools.partial(jax.jit, static_argnames=("apply", "loss"))
def gradient(apply: Callable, params, X, y, weights, *, l2_reg, loss: str = "softmax"):
    """``grad F(w)`` as a pytree like ``params`` (sum convention; see :func:`objective`).

    >>> import jax.numpy as jnp
    >>> g = gradient(lambda w, X: X @ w, jnp.zeros((2, 2)), jnp.eye(2), jnp.array([0, 1]), jnp.ones(2), l2_reg=0.0)
    >>> g.tolist()  # softmax(0) - onehot(y), row by row
    [[-0.5, 0.5], [0.5, -0.5]]
    """
    return jax.grad(_objective, argnums=1)(apply, params, X, y, weights, l2_reg, loss)


def _hvp(apply, params, X, y, weights, vector, l2_reg, loss):
    grad = lambda p: jax.grad(_objective, argnums=1)(apply, p, X, y, weights, l2_reg, loss)
    return jax.jvp(grad, (params,), (vector,))[1]


@functools.partial(jax.jit, static_argnames=("apply", "loss"))
def hvp(apply: Callable, params, X, y, weights, vector, *, l2_reg, loss: str = "softmax"):
    """``grad^2 F(w) v`` on the retained rows, forward-over-reverse; a pytree like ``params``.

    ``d/dt grad F(w + t v) |_{t=0}``: one ``jvp`` of the gradient, a small constant times a gradient's
    cost, never forming the Hessian. ``vector`` is a pytree like ``params``.

    >>> import jax.numpy as jnp
    >>> v = hvp(lambda w, X: X @ w, jnp.zeros((1, 2)), jnp.ones((1, 1)), jnp.array([0]), jnp.ones(1),
    ...         jnp.array([[1.0, 0.0]]), l2_reg=0.0)
    >>> v.tolist()  # (diag(p) - p p^T) e_1 with p = (1/2, 1/2)
    [[0.25, -0.25]]
    """
    return _hvp(apply, params, X, y, weights, vector, l2_reg, loss)


@functools.partial(jax.jit, static_argnames=("apply", "loss"))
def dense_hessian(apply: Callable, params, X, y, weights, *, l2_reg, loss: str = "softmax") -> Array:
    """The ``(p, p)`` Hessian of :func:`objective` in the ``ravel_pytree`` order of ``params``.

    One HVP per basis vector (``vmap``), O(p) HVPs: for small networks, tests and exact eigenvalues.

    >>> import jax.numpy as jnp
    >>> dense_hessian(lambda w, X: X @ w, jnp.zeros((1, 2)), jnp.ones((1, 1)), jnp.array([0]),
    ...               jnp.ones(1), l2_reg=1.0).tolist()
    [[1.25, -0.25], [-0.25, 1.25]]
    """
    flat, unravel = ravel_pytree(params)
    column = lambda e: ravel_pytree(_hvp(apply, params, X, y, weights, unravel(e), l2_reg, loss))[0]
    H = jax.vmap(column)(jnp.eye(flat.size, dtype=flat.dtype))
    return 0.5 * (H + H.T)


# ----------------------------------------------------------------------------------------------------
# Training (optax), fine-tuning and retraining all go through ``train``.


class TrainResult(NamedTuple):
    """Result of :func:`train`.

    Attributes:
      params: the trained parameters.
      objective: ``F(params)`` (sum convention) on the rows trained on.
      gradient_norm: ``||grad F(params)||`` (sum convention): the training residual.
      steps: optimiser steps taken.
    """

    params: Any
    objective: Array
    gradient_norm: Array
    steps: Array


def _project(params, radius):
    norm = jnp.sqrt(_sq_norm(params))
    factor = jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-300))
    return jax.tree_util.tree_map(lambda p: p * factor.astype(p.dtype), params)


@functools.partial(jax.jit, static_argnames=("apply", "loss", "optimizer", "projected"))
def _train(apply, params, X, y, weights, l2_reg, learning_rate, tol, radius, steps, *, loss, optimizer, projected):
    # ``steps`` is traced (a while loop), so changing it does not recompile.
    n = jnp.maximum(jnp.sum(weights), 1.0)
    mean_obj = lambda p: _objective(apply, p, X, y, weights, l2_reg, loss) / n

    if optimizer == "lbfgs":
        opt = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(mean_obj)

        def cond(state):
            _, s, k = state
            grad = optax.tree.get(s, "grad")
            return (k == 0) | ((k < steps) & (jnp.sqrt(_sq_norm(grad)) * n > tol))

        def body(state):
            p, s, k = state
            value, grad = value_and_grad(p, state=s)
            updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=mean_obj)
            return optax.apply_updates(p, updates), s, k + 1

        params, _, k = jax.lax.while_loop(cond, body, (params, opt.init(params), jnp.asarray(0)))
    else:
        opt = optax.adam(learning_rate) if optimizer == "adam" else optax.sgd(learning_rate)

        def step(_, carry):
            p, s = carry
            grad = jax.grad(mean_obj)(p)
            updates, s = opt.update(grad, s, p)
            p = optax.apply_updates(p, updates)
            if projected:
                p = _project(p, radius)
            return p, s

        params, _ = jax.lax.fori_loop(0, steps, step, (params, opt.init(params)))
        k = jnp.asarray(steps)
    grad = jax.grad(_objective, argnums=1)(apply, params, X, y, weights, l2_reg, loss)
    return TrainResult(params=params, objective=_objective(apply, params, X, y, weights, l2_reg, loss),
                       gradient_norm=jnp.sqrt(_sq_norm(grad)), steps=k)


def train(apply: Callable, params, X, y, weights=None, *, l2_reg: float, loss: str = "softmax",
          optimizer: str = "adam", steps: int = 500, learning_rate: float = 1e-2, tol: float = 0.0,
          norm_radius: float | None = None) -> TrainResult:
    """Minimises :func:`objective` (full batch, deterministic) from ``params`` with optax.

    The optimiser sees the mean objective ``F / n'`` (so learning rates do not depend on n); the
    reported objective and gradient norm are in the sum convention. Fine-tuning is a few steps from the
    current parameters on the retained rows; retraining is training on the retained rows from the same
    initialisation ("scratch") or from the current parameters ("warm", which is what the Newton step
    approximates for a non-convex network: the local minimiser nearby).

    Args:
      apply: ``apply(params, X) -> logits``.
      params: the starting parameter pytree (left unchanged).
      X, y: all rows and labels. weights: 0/1 mask of the rows to train on (default all).
      l2_reg: ``lambda`` (>= 0, per row).
      loss: "softmax" or "logistic".
      optimizer: "adam", "sgd" (``learning_rate``, exactly ``steps`` steps) or "lbfgs" (optax.lbfgs
        with its zoom line search, until ``||grad F|| <= tol`` or ``steps`` steps).
      steps: the number of steps (the cap for "lbfgs"); traced, so new values do not recompile.
      learning_rate: for "adam" and "sgd".
      tol: "lbfgs" only: stop at this gradient norm (sum convention).
      norm_radius: ``C``: project onto ``||w|| <= C`` after every step (projected gradient descent, the
        norm constraint of Zhang et al. Thm. 3.4); "adam" and "sgd" only.

    Returns:
      :class:`TrainResult`.

    Raises:
      ValueError: for an invalid argument (named in the message).

    >>> import jax.numpy as jnp
    >>> r = train(lambda w, X: X @ w, jnp.zeros((2, 2)), jnp.eye(2), jnp.array([0, 1]), l2_reg=0.1,
    ...           optimizer="lbfgs", steps=100, tol=1e-10)
    >>> bool(r.gradient_norm <= 1e-10), round(float(r.params[0, 0]), 4)  # 2 / (1 + e^{2a}) = 0.4 a
    (True, 0.8168)
    """
    _check_loss(loss)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    steps = _check_int("steps", steps, minimum=1)
    l2_reg = _check_float("l2_reg", l2_reg, minimum=0.0)
    learning_rate = _check_float("learning_rate", learning_rate, minimum=0.0, strict=True)
    tol = _check_float("tol", tol, minimum=0.0)
    if norm_radius is not None:
        norm_radius = _check_float("norm_radius", norm_radius, minimum=0.0, strict=True)
        if optimizer == "lbfgs":
            raise ValueError("norm_radius needs a projected first-order method: use optimizer='adam' or 'sgd' "
                             f"with norm_radius={norm_radius!r}, or norm_radius=None with 'lbfgs'")
    X, y, weights = _rows(X, y, weights, loss)
    return _train(apply, params, X, y, weights, l2_reg, learning_rate, tol,
                  1.0 if norm_radius is None else norm_radius, steps, loss=loss, optimizer=optimizer,
                  projected=norm_radius is not None)


@functools.partial(jax.jit, static_argnames=("apply", "loss"))
def _accuracy(apply, params, X, y, weights, loss):
    logits = apply(params, X)
    if loss == "softmax":
        correct = jnp.argmax(logits, axis=-1) == y.astype(jnp.int32)
    else:
        correct = jnp.where(logits.reshape(logits.shape[0]) >= 0, 1.0, -1.0) == y
    return jnp.sum(weights * correct) / jnp.maximum(jnp.sum(weights), 1.0)


def accuracy(apply: Callable, params, X, y, weights=None, *, loss: str = "softmax") -> float:
    """Accuracy of ``apply(params, X)`` on the rows with weight 1 (all rows by default); NaN if none.

    >>> import jax.numpy as jnp
    >>> accuracy(lambda w, X: X @ w, jnp.eye(2), jnp.eye(2), jnp.array([0, 0]))
    0.5
    """
    _check_loss(loss)
    X, y, weights = _rows(X, y, weights, loss)
    if float(jnp.sum(weights)) == 0:
        return math.nan
    return float(_accuracy(apply, params, X, y, weights, loss))


# ----------------------------------------------------------------------------------------------------
# Inverse-HVP solvers and spectrum estimates on flat vectors (a matvec, never a loss).


def lissa(matvec: Callable[[Array], Array], b: Array, *, scale: float, depth: int, repeats: int = 1,
          sample_matvec: Callable[[Array, Array], Array] | None = None, key: Array | None = None,
          rtol: float = 1e-3, atol: float = 0.0) -> solvers.SolveResult:
    """LiSSA estimate of ``A^{-1} b`` for a symmetric positive-definite ``A`` (Agarwal et al. 2017).

    The truncated Neumann series ``A^{-1} = (1/c) sum_j (I - A/c)^j``, evaluated by the recursion::

        u_0 = b,   u_j = b + u_{j-1} - A_j u_{j-1} / c,   x = u_J / c    (J = depth, c = scale),

    averaged over ``repeats`` independent runs. ``A_j`` is ``A`` (``sample_matvec=None``: a
    deterministic Richardson iteration, error ``<= (1 - lambda_min(A)/c)^J ||A^{-1} b||``) or an unbiased
    stochastic estimate ``sample_matvec(v, key_j)`` (e.g. the Hessian of a minibatch), as in the paper.
    It converges iff the spectrum of ``A`` lies in ``(0, 2c)``: choose ``c >= lambda_max(A)``.
    Convergence is judged on the *exact* residual ``||A x - b||`` (one extra ``matvec``), never on the
    recursion.

    Args:
      matvec: ``v -> A v`` (exact; used for the residual, and for the recursion when
        ``sample_matvec`` is None).
      b: right-hand side (flat).
      scale: ``c`` > 0.
      depth: ``J``, recursion steps per run (a static int >= 1).
      repeats: independent runs averaged (static int >= 1; > 1 only helps with ``sample_matvec``).
      sample_matvec: ``(v, key) -> A_j v``, unbiased for ``A v``; needs ``key``.
      key: PRNG key for ``sample_matvec``.
      rtol, atol: converged iff ``||A x - b|| <= max(rtol ||b||, atol)`` and ``x`` is finite.

    Returns:
      :class:`certunlearn.solvers.SolveResult` with ``steps = depth * repeats`` and the exact residual.

    References:
      Agarwal, Bullins, Hazan, arXiv:1602.03943, Alg. 1 (LiSSA); Zhang et al., arXiv:2408.00920, Sec. 3.3.

    >>> import jax.numpy as jnp
    >>> A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    >>> r = lissa(lambda v: A @ v, jnp.array([1.0, 1.0]), scale=2.5, depth=200)
    >>> [round(v, 6) for v in r.x.tolist()], bool(r.converged)
    ([0.285714, 0.857143], True)
    """
    if sample_matvec is not None and key is None:
        raise ValueError("lissa with sample_matvec needs key=jax.random.key(...); got key=None")
    keys = jax.random.split(key if key is not None else jax.random.key(0), repeats * depth)
    keys = keys.reshape((repeats, depth) + keys.shape[1:])
    step_matvec = (lambda v, k: matvec(v)) if sample_matvec is None else sample_matvec

    def one_run(run_keys):
        def body(u, k):
            return b + u - step_matvec(u, k) / scale, None

        u, _ = jax.lax.scan(body, b, run_keys)
        return u / scale

    x = jnp.mean(jax.lax.map(one_run, keys), axis=0)
    residual = jnp.sqrt(jnp.sum((matvec(x) - b) ** 2))
    threshold = jnp.maximum(rtol * jnp.sqrt(jnp.sum(b * b)), atol)
    converged = (residual <= threshold) & jnp.all(jnp.isfinite(x))
    return solvers.SolveResult(x=x, converged=converged, steps=jnp.asarray(depth * repeats, jnp.int32),
                               residual=residual)


def lanczos(matvec: Callable[[Array], Array], v0: Array, *, steps: int) -> Array:
    """Ritz values of ``steps``-step Lanczos with full reorthogonalisation (ascending).

    The extreme Ritz values approach the extreme eigenvalues of the symmetric operator from the inside:
    ``ritz[0] >= lambda_min`` and ``ritz[-1] <= lambda_max``. So ``ritz[0]`` is an *optimistic* estimate of
    ``lambda_min``, never a proven lower bound. On breakdown (an invariant subspace) the recursion
    restarts from a deterministic pseudo-random vector orthogonal to the basis.

    Args:
      matvec: ``v -> A v`` for a symmetric ``A`` (flat vectors).
      v0: the non-zero start vector (flat); fixes the result.
      steps: Krylov dimension (a static int, at most ``v0.size``).

    Returns:
      ``(steps,)`` Ritz values, ascending.

    >>> import jax.numpy as jnp
    >>> A = jnp.diag(jnp.array([-1.0, 2.0, 5.0]))
    >>> [round(v, 6) for v in lanczos(lambda v: A @ v, jnp.ones(3), steps=3).tolist()]
    [-1.0, 2.0, 5.0]
    """
    dim = v0.size
    dtype = v0.dtype
    restarts = jax.random.normal(jax.random.key(17), (steps, dim), dtype)
    basis = jnp.zeros((steps + 1, dim), dtype).at[0].set(v0 / jnp.sqrt(jnp.sum(v0 * v0)))

    def body(j, state):
        basis, alphas, betas = state
        q = basis[j]
        w = matvec(q)
        alpha = jnp.dot(q, w)
        w = w - basis.T @ (basis @ w)
        w = w - basis.T @ (basis @ w)
        beta = jnp.sqrt(jnp.sum(w * w))
        scale = jnp.maximum(jnp.sqrt(jnp.sum(q * q)), 1.0) * jnp.finfo(dtype).eps * 1e3
        broke = beta <= scale * (jnp.abs(alpha) + 1.0)
        fresh = restarts[j] - basis.T @ (basis @ restarts[j])
        fresh = fresh - basis.T @ (basis @ fresh)
        nxt = jnp.where(broke, fresh / jnp.sqrt(jnp.sum(fresh * fresh)), w / jnp.where(broke, 1.0, beta))
        basis = basis.at[j + 1].set(nxt)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(jnp.where(broke, 0.0, beta))

    _, alphas, betas = jax.lax.fori_loop(0, steps, body, (basis, jnp.zeros(steps, dtype), jnp.zeros(steps, dtype)))
    tridiagonal = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    return jnp.linalg.eigvalsh(tridiagonal)


class EigenEstimate(NamedTuple):
    """Extreme eigenvalues of a Hessian and how they were obtained.

    Attributes:
      minimum, maximum: the smallest and largest eigenvalue (estimates unless ``exact``).
      exact: True for a float64 dense eigendecomposition (exact up to rounding); False for Lanczos.
      how: words for the certificate.
    """

    minimum: float
    maximum: float
    exact: bool
    how: str


def extreme_eigenvalues(apply: Callable, params, X, y, weights=None, *, l2_reg: float, loss: str = "softmax",
                        method: str = "auto", steps: int = 40, key: Array | None = None) -> EigenEstimate:
    """``lambda_min`` and ``lambda_max`` of ``grad^2 F(params)`` on the retained rows (no damping).

    ``method="dense"``: ``numpy.linalg.eigvalsh`` of the float64 :func:`dense_hessian` (O(p) HVPs and
    O(p^3); exact up to rounding). ``"lanczos"``: :func:`lanczos` with ``steps`` HVPs from a random start
    (``key``); ``lambda_min`` is then over-estimated (optimistic, not a bound). ``"auto"``: dense up to
    1,500 parameters.

    >>> import jax.numpy as jnp
    >>> e = extreme_eigenvalues(lambda w, X: X @ w, jnp.zeros((1, 2)), jnp.ones((1, 1)), jnp.array([0]),
    ...                         jnp.ones(1), l2_reg=1.0)
    >>> round(e.minimum, 6), round(e.maximum, 6), e.exact
    (1.0, 1.5, True)
    """
    _check_loss(loss)
    if method not in CURVATURES:
        raise ValueError(f"method must be one of {CURVATURES}, got {method!r}")
    X, y, weights = _rows(X, y, weights, loss)
    flat, _ = ravel_pytree(params)
    p = flat.size
    if method == "dense" or (method == "auto" and p <= _DENSE_LIMIT):
        params64 = _cast(params, jnp.float64)
        H = np.asarray(dense_hessian(apply, params64, X.astype(jnp.float64), y, weights.astype(jnp.float64),
                                     l2_reg=l2_reg, loss=loss), dtype=np.float64)
        if not np.all(np.isfinite(H)):
            return EigenEstimate(math.nan, math.nan, False, "not computed: the Hessian is not finite")
        values = np.linalg.eigvalsh(H)
        return EigenEstimate(float(values[0]), float(values[-1]), True,
                             "exact: float64 dense Hessian eigendecomposition")
    steps = _check_int("steps", steps, minimum=2)
    steps = min(steps, p)
    key = jax.random.key(0) if key is None else key
    ritz = _lanczos_ritz(apply, params, X, y, weights, l2_reg, key, loss=loss, steps=steps)
    if not bool(jnp.all(jnp.isfinite(ritz))):
        return EigenEstimate(math.nan, math.nan, False, "not computed: the Hessian-vector products are not finite")
    return EigenEstimate(float(ritz[0]), float(ritz[-1]), False,
                         f"estimated: {steps}-step Lanczos on HVPs (the smallest Ritz value over-estimates "
                         "lambda_min: optimistic, not a proven bound)")


@functools.partial(jax.jit, static_argnames=("apply", "loss", "steps"))
def _lanczos_ritz(apply, params, X, y, weights, l2_reg, key, *, loss, steps):
    flat, unravel = ravel_pytree(params)
    v0 = jax.random.normal(key, flat.shape, flat.dtype)
    matvec = lambda v: ravel_pytree(_hvp(apply, params, X, y, weights, unravel(v), l2_reg, loss))[0]
    return lanczos(matvec, v0, steps=steps)


@functools.partial(jax.jit, static_argnames=("apply", "loss", "probes", "num_anchors"))
def _lipschitz_probes(apply, params, anchors, X, y, weights, l2_reg, radius, key, *, loss, probes, num_anchors):
    flat, unravel = ravel_pytree(params)
    hess = lambda p, v: ravel_pytree(_hvp(apply, p, X, y, weights, unravel(v), l2_reg, loss))[0]
    vs = jax.random.normal(key, (2 * probes + num_anchors, flat.size), flat.dtype)
    vs = vs / jnp.linalg.norm(vs, axis=1, keepdims=True)

    def probe(u, v):
        other = unravel(flat + radius * u)
        pair = jnp.stack([u, v])
        diff = jax.vmap(lambda w: hess(other, w) - hess(params, w))(pair)
        return jnp.max(jnp.linalg.norm(diff, axis=1)) / radius

    ratios = [jnp.max(jax.vmap(probe)(vs[0:2 * probes:2], vs[1:2 * probes:2]))]
    for j, anchor in enumerate(anchors):
        step = flat - ravel_pytree(anchor)[0]
        length = jnp.linalg.norm(step)
        safe = jnp.where(length > 0, length, 1.0)
        for v in (step / safe, vs[2 * probes + j]):
            ratio = jnp.linalg.norm(hess(params, v) - hess(anchor, v)) / safe
            ratios.append(jnp.where(length > 0, ratio, 0.0))
    return jnp.max(jnp.stack(ratios))


def estimate_hessian_lipschitz(apply: Callable, params, X, y, weights=None, *, l2_reg: float, key: Array,
                               loss: str = "softmax", radius: float = 1e-2, probes: int = 4,
                               anchors=()) -> float:
    """A finite-difference estimate of the Hessian's Lipschitz constant ``M`` near ``params``.

    ``M_hat = max ||(grad^2 F(a) - grad^2 F(b)) v|| / ||a - b||`` over unit probe vectors ``v`` and pairs:
    ``(params, params + radius u_k)`` for ``probes`` random unit directions ``u_k`` (``v = u_k`` and an
    independent random ``v``), and ``(params, anchor)`` for each of ``anchors`` (e.g. the parameters
    before a Newton step, probed along the step). The true ``M`` is a supremum over all pairs and all
    ``v``, so ``M_hat`` is a *lower* estimate: an assumption when used in a bound, never a proof.

    Args:
      apply, params, X, y, weights, l2_reg, loss: as for :func:`objective` (all in float64 is best).
      key: PRNG key for the directions.
      radius: > 0, the finite-difference step.
      probes: number of random directions (>= 1).
      anchors: further parameter pytrees to pair with ``params``.

    Returns:
      ``M_hat`` (sum convention: the constant of ``F``, not of ``F / n'``).

    >>> import jax.numpy as jnp
    >>> m = estimate_hessian_lipschitz(lambda w, X: X @ w, jnp.zeros((2, 2)), jnp.eye(2),
    ...                                jnp.array([0, 1]), jnp.ones(2), l2_reg=0.0, key=jax.random.key(0))
    >>> 0.0 < m < 1.0
    True
    """
    _check_loss(loss)
    radius = _check_float("radius", radius, minimum=0.0, strict=True)
    probes = _check_int("probes", probes, minimum=1)
    X, y, weights = _rows(X, y, weights, loss)
    anchors = tuple(anchors)
    return float(_lipschitz_probes(apply, params, anchors, X, y, weights, l2_reg, radius, key, loss=loss,
                                   probes=probes, num_anchors=len(anchors)))


# ----------------------------------------------------------------------------------------------------
# The Newton step (jitted once per shapes and solver; the retained mask is an argument).


class _Step(NamedTuple):
    step: Array  # s, flat
    grad: Array  # g = grad F(w), flat
    result: solvers.SolveResult


@functools.partial(jax.jit, static_argnames=("apply", "loss", "solver", "maxiter", "depth", "repeats", "batch_size"))
def _newton_solve(apply, params, X, y, weights, l2_reg, damping, rtol, scale, key, *, loss, solver, maxiter,
                  depth, repeats, batch_size):
    flat, unravel = ravel_pytree(params)
    n = jnp.sum(weights)
    shift = damping * n
    g = ravel_pytree(jax.grad(_objective, argnums=1)(apply, params, X, y, weights, l2_reg, loss))[0]

    def matvec(v):
        return ravel_pytree(_hvp(apply, params, X, y, weights, unravel(v), l2_reg, loss))[0] + shift * v

    if solver == "cg":
        result = solvers.conjugate_gradient(matvec, g, rtol=rtol, maxiter=maxiter)
    elif solver == "dense":
        H = dense_hessian(apply, params, X, y, weights, l2_reg=l2_reg, loss=loss)
        result = solvers.cholesky_solve(H + shift * jnp.eye(flat.size, dtype=flat.dtype), g)
    else:
        sample = None
        if batch_size is not None:
            probs = weights / n

            def sample(v, k):
                rows = jax.random.choice(k, X.shape[0], (batch_size,), p=probs)
                # The minibatch's data term scaled by n' / B is unbiased for the retained rows' data term.
                hess = lambda p: jax.grad(
                    lambda q: jnp.sum(_per_example(loss, apply(q, X[rows]), y[rows])) * n / batch_size
                    + 0.5 * l2_reg * n * _sq_norm(q))(p)
                out = jax.jvp(hess, (params,), (unravel(v),))[1]
                return ravel_pytree(out)[0] + shift * v

        result = lissa(matvec, g, scale=scale, depth=depth, repeats=repeats, sample_matvec=sample, key=key,
                       rtol=rtol)
    return _Step(step=result.x, grad=g, result=result)


def newton_step(apply: Callable, params, X, y, weights, *, l2_reg: float, damping: float, loss: str = "softmax",
                solver: str = "cg", rtol: float | None = None, maxiter: int | None = None,
                lissa_scale: float | None = None, lissa_depth: int = 1000, lissa_repeats: int = 1,
                lissa_batch_size: int | None = None, key: Array | None = None):
    """One damped Newton step on the retained rows: ``w - (H + mu n' I)^{-1} grad F(w)`` (no noise).

    ``H = grad^2 F(w)`` and ``grad F(w)`` on the rows with weight 1 (sum convention, module docstring);
    ``mu`` is ``damping`` per retained row. This is the "gradient" form of the removal step: it also
    corrects the training residual of a ``w`` that is not an exact minimiser.

    Args:
      apply, params, X, y, weights, l2_reg, loss: as for :func:`objective`.
      damping: ``mu`` >= 0 (the paper's local convex approximation ``lambda``).
      solver: "cg", "lissa" or "dense".
      rtol: solver tolerance (default 1e-8 for CG, 1e-3 for LiSSA; unused by "dense").
      maxiter: CG iteration cap (default ``10 p``).
      lissa_scale: ``c`` (default: 1.1 times a 20-step Lanczos estimate of ``lambda_max(H) + mu n'``).
      lissa_depth, lissa_repeats: recursion depth and runs averaged.
      lissa_batch_size: rows per stochastic HVP (sampled with replacement from the retained rows;
        None: full batch, deterministic).
      key: PRNG key for the stochastic LiSSA (and the default scale's Lanczos start).

    Returns:
      ``(new_params, SolveResult)``; ``SolveResult.x`` is the flat step ``s``.

    >>> import jax.numpy as jnp
    >>> apply = lambda w, X: X @ w
    >>> w, r = newton_step(apply, jnp.zeros((2, 2)), jnp.eye(2), jnp.array([0, 1]), jnp.ones(2),
    ...                    l2_reg=0.5, damping=0.0)
    >>> [[round(v, 6) for v in row] for row in w.tolist()], bool(r.converged)
    ([[0.333333, -0.333333], [-0.333333, 0.333333]], True)
    """
    params2, step = _solve(apply, params, X, y, weights, l2_reg=l2_reg, damping=damping, loss=loss, solver=solver,
                           rtol=rtol, maxiter=maxiter, lissa_scale=lissa_scale, lissa_depth=lissa_depth,
                           lissa_repeats=lissa_repeats, lissa_batch_size=lissa_batch_size, key=key)[:2]
    return params2, step.result


def _solve(apply, params, X, y, weights, *, l2_reg, damping, loss, solver, rtol, maxiter, lissa_scale, lissa_depth,
           lissa_repeats, lissa_batch_size, key, eigen=None):
    _check_loss(loss)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    l2_reg = _check_float("l2_reg", l2_reg, minimum=0.0)
    damping = _check_float("damping", damping, minimum=0.0)
    X, y, weights = _rows(X, y, weights, loss)
    flat, unravel = ravel_pytree(params)
    rtol = (1e-8 if solver != "lissa" else 1e-3) if rtol is None else _check_float("rtol", rtol, minimum=0.0)
    if maxiter is not None:
        maxiter = _check_int("maxiter", maxiter, minimum=1)
    lissa_depth = _check_int("lissa_depth", lissa_depth, minimum=1)
    lissa_repeats = _check_int("lissa_repeats", lissa_repeats, minimum=1)
    if lissa_batch_size is not None:
        lissa_batch_size = _check_int("lissa_batch_size", lissa_batch_size, minimum=1)
    key = jax.random.key(0) if key is None else key
    scale = 1.0
    if solver == "lissa":
        if lissa_scale is None:
            if eigen is None:
                eigen = extreme_eigenvalues(apply, params, X, y, weights, l2_reg=l2_reg, loss=loss, method="lanczos",
                                            steps=min(20, flat.size), key=key)
            scale = 1.1 * (eigen.maximum + damping * float(jnp.sum(weights)))
        else:
            scale = _check_float("lissa_scale", lissa_scale, minimum=0.0, strict=True)
    out = _newton_solve(apply, params, X, y, weights, l2_reg, damping, rtol, scale, key, loss=loss, solver=solver,
                        maxiter=maxiter, depth=lissa_depth, repeats=lissa_repeats, batch_size=lissa_batch_size)
    new_params = unravel(flat - out.step)
    return new_params, out, scale


# ----------------------------------------------------------------------------------------------------
# Distance bounds.


def local_distance_bound(gradient_residual: float, min_eigenvalue: float, hessian_lipschitz: float):
    """The a-posteriori bound ``||w_u - w*|| <= 2 rho / (m + sqrt(m^2 - 2 M rho))`` (module docstring).

    With ``rho = ||grad F(w_u)||``, ``m = lambda_min(grad^2 F(w_u))`` and ``M`` the Lipschitz constant of
    ``grad^2 F`` on ``B(w_u, m / M)``: if ``m > 0`` and ``m^2 > 2 M rho``, ``F`` has exactly one
    stationary point ``w*`` in that ball, at distance at most ``Delta`` from ``w_u``. For ``M = 0``:
    ``rho / m`` and the ball is the whole space.

    Args:
      gradient_residual: ``rho`` >= 0. min_eigenvalue: ``m``. hessian_lipschitz: ``M`` >= 0.

    Returns:
      ``(Delta, radius)`` with ``radius = m / M`` the ball on which ``M`` must hold and ``w*`` is unique;
      ``(inf, nan)`` when ``m <= 0`` or ``m^2 <= 2 M rho`` (local convexity not shown).

    >>> local_distance_bound(0.1, 2.0, 0.0)
    (0.05, inf)
    >>> [round(v, 6) for v in local_distance_bound(0.1, 2.0, 10.0)]
    [0.058579, 0.2]
    >>> local_distance_bound(0.1, -1.0, 1.0)
    (inf, nan)
    """
    rho, m, big_m = float(gradient_residual), float(min_eigenvalue), float(hessian_lipschitz)
    if not (math.isfinite(rho) and math.isfinite(m) and math.isfinite(big_m)) or m <= 0:
        return math.inf, math.nan
    if big_m == 0.0:
        return rho / m, math.inf
    disc = m * m - 2.0 * big_m * rho
    if disc <= 0:
        return math.inf, math.nan
    # The smaller root of (M / 2) d^2 - m d + rho = 0, in a cancellation-free form.
    return 2.0 * rho / (m + math.sqrt(disc)), m / big_m


def worst_case_distance_bound(*, norm_radius: float, hessian_lipschitz: float, damping_shift: float,
                              min_eigenvalue: float, solve_error: float, unlearned_norm: float) -> float:
    """Zhang et al. Thm. 3.4 with the solver error: ``(2C (M C + mu n') + ||e||) / (mu n' + lambda_min)``.

    Valid when ``||w||, ||w*|| <= C`` (``w*`` a stationary point of ``F``), ``M`` bounds the Hessian's
    Lipschitz constant on the segment and ``mu n' + lambda_min(H(w)) > 0``. The trivial bound
    ``||w_u|| + C`` holds under the same assumption; the smaller one is returned.

    Args:
      norm_radius: ``C``. hessian_lipschitz: ``M``. damping_shift: ``mu n'`` (sum convention).
      min_eigenvalue: ``lambda_min(H(w))``. solve_error: ``||(H + mu n' I) s - g||``.
      unlearned_norm: ``||w_u||``.

    Returns:
      ``Delta``, or inf when ``mu n' + lambda_min <= 0``.

    >>> worst_case_distance_bound(norm_radius=1.0, hessian_lipschitz=0.0, damping_shift=1.0,
    ...                           min_eigenvalue=9.0, solve_error=0.0, unlearned_norm=1.0)
    0.2
    """
    denominator = damping_shift + min_eigenvalue
    if not denominator > 0:
        return math.inf
    c = norm_radius
    paper = (2.0 * c * (hessian_lipschitz * c + damping_shift) + solve_error) / denominator
    return min(paper, unlearned_norm + c)


# ----------------------------------------------------------------------------------------------------
# The certificate.


@dataclasses.dataclass(frozen=True)
class DeepConstant:
    """One number behind a certificate and how it was obtained.

    Attributes:
      name: the symbol, e.g. ``"lambda_min(H(w_u))"``.
      value: its value (sum convention).
      how: how it was obtained, in words.
      proven: True when computed exactly (up to float64 rounding); False for estimates and assumptions.
    """

    name: str
    value: float
    how: str
    proven: bool


@dataclasses.dataclass(frozen=True)
class DeepCertificate:
    """The (epsilon, delta) claim of one deep unlearning request, with everything it rests on.

    The claim: the published ``w_u + N(0, sigma^2 I)`` and ``w* + N(0, sigma^2 I)`` (the retrained model
    ``w*`` published with the same mechanism) are (epsilon, delta)-indistinguishable, because
    ``||w_u - w*|| <= distance_bound`` (the Gaussian mechanism's L2 sensitivity ``Delta``). It holds only
    if every entry of ``assumptions`` holds and every constant with ``proven=False`` is right; for a
    neural network that is always the case to check, so ``conditional`` is True unless all are proven.

    Attributes:
      certified: whether the claim is made (solver converged, local convexity shown, Delta finite).
      reasons: why not (empty when certified).
      epsilon, delta: the privacy parameters (epsilon = inf when not certified).
      sigma: output noise std (0 when not certified: nothing is added, nothing certified).
      calibration: "analytic" (Balle & Wang) or "guo".
      bound: "local" or "worst-case". distance_bound: ``Delta``.
      l2_reg, damping: ``lambda`` and ``mu`` (per retained row).
      num_retained, num_removed: ``n'`` and ``m``.
      solver, solver_steps, solver_converged: the inverse-HVP solve.
      solve_error: ``||(H + mu n' I) s - g||`` recomputed in float64.
      step_norm: ``||s||``. gradient_residual: ``||grad F(w_u)||`` (float64).
      min_eigenvalue: ``lambda_min(H(w))`` (undamped, retained rows, at the input parameters).
      min_eigenvalue_unlearned: ``lambda_min(grad^2 F(w_u))``. max_eigenvalue: ``lambda_max(H(w))``.
      hessian_lipschitz: ``M``. norm_radius: ``C`` (NaN if none). param_norm: ``||w||``.
      constants: every constant with how it was obtained. assumptions: in words.
    """

    certified: bool
    reasons: tuple[str, ...]
    epsilon: float
    delta: float
    sigma: float
    calibration: str
    bound: str
    distance_bound: float
    l2_reg: float
    damping: float
    num_retained: int
    num_removed: int
    solver: str
    solver_steps: int
    solver_converged: bool
    solve_error: float
    step_norm: float
    gradient_residual: float
    min_eigenvalue: float
    min_eigenvalue_unlearned: float
    max_eigenvalue: float
    hessian_lipschitz: float
    norm_radius: float
    param_norm: float
    constants: tuple[DeepConstant, ...]
    assumptions: tuple[str, ...]

    @property
    def conditional(self) -> bool:
        """True when some constant is estimated or assumed (always, in practice, for a network)."""
        return not all(c.proven for c in self.constants) or bool(self.assumptions)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["constants"] = [dataclasses.asdict(c) for c in self.constants]
        out["conditional"] = self.conditional
        return out

    def __str__(self) -> str:
        if self.certified:
            head = (f"({self.epsilon:.4g}, {self.delta:.3g})-certified deep unlearning, CONDITIONAL on the "
                    f"assumptions and estimated constants below [{self.bound} bound, {self.calibration} "
                    f"calibration, output noise sigma={self.sigma:.4g}, Delta={self.distance_bound:.4g}]")
        else:
            head = ("NOT CERTIFIED deep unlearning step (no noise added, epsilon = inf): "
                    + "; ".join(self.reasons))
        lines = [head,
                 (f"  Zhang et al. (2024) damped Newton step: l2_reg={self.l2_reg:.4g}, damping={self.damping:.4g} "
                  f"(per row, sum convention), n'={self.num_retained} retained, m={self.num_removed} removed"),
                 (f"  solver {self.solver}: {self.solver_steps} steps, converged={self.solver_converged}, "
                  f"||(H + mu n' I) s - g|| = {self.solve_error:.3g}, ||s|| = {self.step_norm:.4g}"),
                 "  constants:"]
        for c in self.constants:
            tag = "proven" if c.proven else "NOT PROVEN"
            lines.append(f"    {c.name} = {c.value:.6g}  [{tag}: {c.how}]")
        lines.append("  assumptions:")
        lines.extend(f"    {i}. {a}" for i, a in enumerate(self.assumptions, 1))
        return "\n".join(lines)


class DeepUnlearnResult(NamedTuple):
    """Result of :func:`unlearn`.

    Attributes:
      params: what to publish: ``w_u + N(0, sigma^2 I)`` when certified, else the bare step ``w_u``
        (with ``certificate.certified`` False: nothing is claimed for it).
      step_params: the noise-free step ``w_u`` (research access: never publish it next to ``params``).
      retained: boolean mask of the rows retained after the request.
      certificate: the :class:`DeepCertificate`.
      seconds: wall time of the Newton step (gradient + solve), compile time excluded on repeat calls.
      certificate_seconds: wall time of the checks, eigenvalue and Lipschitz estimates and calibration.
    """

    params: Any
    step_params: Any
    retained: np.ndarray
    certificate: DeepCertificate
    seconds: float
    certificate_seconds: float


_ASSUMPTION_RETRAIN_LOCAL = (
    "'retraining' means the local minimiser of F on the retained rows inside B(w_u, m / M) (unique there "
    "under the other assumptions), e.g. what training warm-started from w converges to; a retrain from a new "
    "initialisation can reach another minimiser, which this certificate does not cover")
_ASSUMPTION_RETRAIN_WC = (
    "the retrained model w* is a stationary point of F on the retained rows with ||w*|| <= C (train and "
    "retrain with the same projection onto the C-ball, ending in its interior)")


@functools.partial(jax.jit, static_argnames=("apply", "loss"))
def _checks64(apply, params, step_params, step, g, X, y, weights, l2_reg, shift, *, loss):
    _, unravel = ravel_pytree(params)
    hs = ravel_pytree(_hvp(apply, params, X, y, weights, unravel(step), l2_reg, loss))[0] + shift * step
    solve_error = jnp.sqrt(jnp.sum((hs - g) ** 2))
    g_u = ravel_pytree(jax.grad(_objective, argnums=1)(apply, step_params, X, y, weights, l2_reg, loss))[0]
    flat_w, flat_u = ravel_pytree(params)[0], ravel_pytree(step_params)[0]
    norm = lambda v: jnp.sqrt(jnp.sum(v * v))
    return solve_error, norm(g_u), norm(flat_w - flat_u), norm(flat_w), norm(flat_u)


@jax.jit
def _add_noise(params, key, sigma):
    flat, unravel = ravel_pytree(params)
    return unravel(flat + sigma * jax.random.normal(key, flat.shape, flat.dtype))


def unlearn(apply: Callable, params, X, y, forget, *, retained=None, l2_reg: float, damping: float,
            epsilon: float, delta: float, key: Array, sigma: float | None = None, loss: str = "softmax",
            solver: str = "cg", bound: str = "local", calibration: str = "analytic",
            norm_radius: float | None = None, hessian_lipschitz: float | None = None,
            curvature: str = "auto", lanczos_steps: int = 40, rtol: float | None = None,
            maxiter: int | None = None, lissa_scale: float | None = None, lissa_depth: int = 1000,
            lissa_repeats: int = 1, lissa_batch_size: int | None = None, on_failure: str = "raise",
            dtype: str = "float64") -> DeepUnlearnResult:
    """Removes the rows ``forget`` from a trained network: damped Newton step, bound, output noise.

    ``w_u = w - (H + mu n' I)^{-1} grad F(w)`` on the rows retained after the request (sum convention,
    ``mu = damping``), then ``Delta`` by ``bound`` (module docstring), ``sigma`` from ``(epsilon, delta)``
    and ``Delta`` (or ``epsilon`` from a given ``sigma``), and ``w_u + N(0, sigma^2 I)``. Every constant
    and assumption goes into the :class:`DeepCertificate`. The neighbouring relation is remove-m
    (``forget`` as one batch); a later request starts from the returned ``step_params`` (the bounds do
    not need ``w`` to be a minimiser) and is certified on its own.

    Args:
      apply: ``apply(params, X) -> logits``, pure. For a Lipschitz Hessian use smooth activations.
      params: the trained parameter pytree ``w`` (left unchanged).
      X, y: all training rows (static shape) and labels (ints for softmax, +-1 for logistic).
      forget: row indices to remove (unique, currently retained; may be empty).
      retained: boolean ``(n,)`` mask of the rows retained *before* this request (default: all).
      l2_reg: ``lambda`` >= 0, the training regulariser (per row).
      damping: ``mu`` >= 0, per row.
      epsilon, delta: the target (epsilon > 0, 0 < delta < 1).
      key: PRNG key for the noise (and the estimates' random directions).
      sigma: give a noise std instead: then ``epsilon`` is what ``sigma`` certifies for ``Delta`` (the
        ``epsilon`` argument is only validated).
      loss: "softmax" or "logistic".
      solver: "cg", "lissa" or "dense" (see :func:`newton_step` for ``rtol``, ``maxiter`` and the LiSSA
        options).
      bound: "local" (default) or "worst-case" (needs ``norm_radius``).
      calibration: "analytic" (exact Gaussian mechanism) or "guo".
      norm_radius: ``C`` of the parameter norm constraint used in training (``||w|| <= C`` is checked).
      hessian_lipschitz: ``M`` if known (an assumption you supply); default: estimated by
        :func:`estimate_hessian_lipschitz` around ``w_u`` and along the step.
      curvature: eigenvalues by "dense" (exact), "lanczos" (estimate) or "auto" (dense up to 1,500
        parameters). lanczos_steps: Krylov dimension.
      on_failure: "raise" (:class:`certunlearn.api.CertificationError`) or "report" (return
        ``certified=False``, no noise).
      dtype: "float64" (default) or "float32" for the step; the checks and bounds are always float64.

    Returns:
      :class:`DeepUnlearnResult`.

    Raises:
      ValueError: for an invalid argument (named in the message); nothing passed in is modified.
      CertificationError: with ``on_failure="raise"``, when the solver did not converge, local convexity
        is not shown, or ``Delta`` is not finite; the message is the certificate's printout.

    References:
      Zhang et al., arXiv:2408.00920, Thm. 3.4 and Sec. 3.3; Balle & Wang, arXiv:1805.06530.

    >>> import jax, jax.numpy as jnp
    >>> X = jnp.eye(3); y = jnp.array([0, 1, 1]); apply = lambda w, X: X @ w
    >>> w = train(apply, jnp.zeros((3, 2)), X, y, l2_reg=0.5, optimizer="lbfgs", steps=50, tol=1e-12).params
    >>> r = unlearn(apply, w, X, y, [2], l2_reg=0.5, damping=0.0, epsilon=1.0, delta=1e-5,
    ...             hessian_lipschitz=1.0, key=jax.random.key(0))
    >>> c = r.certificate
    >>> c.certified, c.num_retained, round(c.distance_bound, 4), round(c.sigma, 4)
    (True, 2, 0.0018, 0.0069)
    """
    start = time.perf_counter()
    _check_loss(loss)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    if curvature not in CURVATURES:
        raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    epsilon, delta = calib.validate_privacy(epsilon, delta)
    calibration = calib.validate_calibration(calibration)
    if sigma is not None:
        sigma = _check_float("sigma", sigma, minimum=0.0)
    l2_reg = _check_float("l2_reg", l2_reg, minimum=0.0)
    damping = _check_float("damping", damping, minimum=0.0)
    lanczos_steps = _check_int("lanczos_steps", lanczos_steps, minimum=2)
    if hessian_lipschitz is not None:
        hessian_lipschitz = _check_float("hessian_lipschitz", hessian_lipschitz, minimum=0.0)
    if norm_radius is not None:
        norm_radius = _check_float("norm_radius", norm_radius, minimum=0.0, strict=True)
    elif bound == "worst-case":
        raise ValueError("bound='worst-case' needs norm_radius (the C of ||w|| <= C used in training), got None; "
                         "train with norm_radius=C, or use bound='local'")
    if not (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(f"key must be a typed PRNG key from jax.random.key(seed), got {key!r}")
    X, y, _ = _rows(X, y, None, loss)
    n = X.shape[0]
    before = _retained_mask(retained, n)
    forget = _forget_indices(forget, before)
    after = before.copy()
    after[forget] = False
    if not after.any():
        raise ValueError(f"forget removes every retained row ({forget.size} of {n}); keep at least one row")
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or not all(jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) for leaf in leaves):
        raise ValueError("params must be a non-empty pytree of floating arrays, e.g. the output of a model's init")

    work = jnp.dtype(dtype)
    params_w = _cast(params, work)
    X_w = X.astype(work)
    weights_w = jnp.asarray(after, work)
    noise_key, eig_key, lip_key, lissa_key = jax.random.split(key, 4)
    num_retained = int(after.sum())
    shift = damping * num_retained

    # Curvature at w (the damped local-convexity check; also LiSSA's scale).
    eig_w = extreme_eigenvalues(apply, params_w, X_w, y, weights_w, l2_reg=l2_reg, loss=loss, method=curvature,
                                steps=lanczos_steps, key=eig_key)
    cert_seconds = time.perf_counter() - start
    step_start = time.perf_counter()
    step_params, out, scale = _solve(
        apply, params_w, X_w, y, weights_w, l2_reg=l2_reg, damping=damping, loss=loss, solver=solver, rtol=rtol,
        maxiter=maxiter, lissa_scale=lissa_scale, lissa_depth=lissa_depth, lissa_repeats=lissa_repeats,
        lissa_batch_size=lissa_batch_size, key=lissa_key, eigen=eig_w)
    jax.block_until_ready(step_params)
    seconds = time.perf_counter() - step_start

    check_start = time.perf_counter()
    f64 = jnp.float64
    params64, step64 = _cast(params, f64), _cast(step_params, f64)
    X64, weights64 = X.astype(f64), jnp.asarray(after, f64)
    solve_error, rho, step_norm, param_norm, unlearned_norm = (float(v) for v in _checks64(
        apply, params64, step64, out.step.astype(f64), out.grad.astype(f64), X64, y, weights64, l2_reg, shift,
        loss=loss))
    eig_u = extreme_eigenvalues(apply, step64, X64, y, weights64, l2_reg=l2_reg, loss=loss, method=curvature,
                                steps=lanczos_steps, key=eig_key)
    if hessian_lipschitz is None and not math.isfinite(step_norm):
        lipschitz, lipschitz_how = math.nan, "not estimated: the step is not finite"
    elif hessian_lipschitz is None:
        lipschitz = estimate_hessian_lipschitz(apply, step64, X64, y, weights64, l2_reg=l2_reg, loss=loss,
                                               key=lip_key, radius=max(step_norm, 1e-3), anchors=(params64,))
        lipschitz_how = ("estimated: max finite difference ||(H(a) - H(b)) v|| / ||a - b|| over 4 random "
                         "directions around w_u and the step segment; a lower estimate of the true constant, "
                         "not a proven bound")
    else:
        lipschitz = hessian_lipschitz
        lipschitz_how = "supplied by the caller (an assumption)"
    converged = bool(out.result.converged)

    constants = [
        DeepConstant("||grad F(w_u)||", rho, "computed: exact gradient on the retained rows in float64", True),
        DeepConstant("||(H + mu n' I) s - g||", solve_error, "computed: one float64 HVP", True),
        DeepConstant("||s||", step_norm, "computed", True),
        DeepConstant("||w||", param_norm, "computed", True),
        DeepConstant("lambda_min(H(w))", eig_w.minimum, eig_w.how, eig_w.exact),
        DeepConstant("lambda_max(H(w))", eig_w.maximum, eig_w.how, eig_w.exact),
        DeepConstant("lambda_min(grad^2 F(w_u))", eig_u.minimum, eig_u.how, eig_u.exact),
        DeepConstant("M (Hessian Lipschitz)", lipschitz, lipschitz_how, False),
    ]
    if solver == "lissa":
        constants.append(DeepConstant("LiSSA scale c", scale, "1.1 (lambda_max estimate + mu n')"
                                      if lissa_scale is None else "supplied by the caller", True))
    reasons = []
    if not converged:
        reasons.append(f"the {solver} solve did not converge ({int(out.result.steps)} steps, "
                       f"residual {float(out.result.residual):.3g}); raise maxiter/lissa_depth or the damping")
    if not shift + eig_w.minimum > 0:
        reasons.append(f"local convexity fails at w: mu n' + lambda_min(H(w)) = {shift + eig_w.minimum:.4g} <= 0; "
                       "increase damping")
    assumptions = []
    if bound == "local":
        distance, radius = local_distance_bound(rho, eig_u.minimum, lipschitz)
        constants.append(DeepConstant("m / M (ball radius)", radius, "computed from lambda_min(w_u) and M", True))
        assumptions = [
            f"lambda_min(grad^2 F(w_u)) >= {eig_u.minimum:.6g}"
            + ("" if eig_u.exact else " (the Lanczos estimate may be too high)"),
            f"the Hessian of F is {lipschitz:.6g}-Lipschitz on B(w_u, m / M) (radius {radius:.3g})",
            _ASSUMPTION_RETRAIN_LOCAL,
        ]
        if not math.isfinite(distance):
            reasons.append(f"local convexity not shown at w_u: lambda_min = {eig_u.minimum:.4g}, M = {lipschitz:.4g},"
                           f" ||grad F(w_u)|| = {rho:.4g} (needs lambda_min^2 > 2 M ||grad F(w_u)||); "
                           "increase l2_reg or use bound='worst-case'")
    else:
        distance = worst_case_distance_bound(norm_radius=norm_radius, hessian_lipschitz=lipschitz, damping_shift=shift,
                                             min_eigenvalue=eig_w.minimum, solve_error=solve_error,
                                             unlearned_norm=unlearned_norm)
        constants.append(DeepConstant("C (norm radius)", norm_radius, "supplied by the caller", True))
        assumptions = [
            f"lambda_min(H(w)) >= {eig_w.minimum:.6g}"
            + ("" if eig_w.exact else " (the Lanczos estimate may be too high)"),
            f"the Hessian of F is {lipschitz:.6g}-Lipschitz on the segment from w to w*",
            _ASSUMPTION_RETRAIN_WC,
        ]
        if param_norm > norm_radius * (1.0 + 1e-12):
            reasons.append(f"||w|| = {param_norm:.6g} exceeds norm_radius C = {norm_radius:.6g}; train with "
                           "norm_radius=C (projected) or pass the C used in training")
    if converged and not math.isfinite(distance) and not reasons:
        reasons.append("the distance bound is not finite")
    certified = not reasons

    if certified:
        if sigma is None:
            if distance == 0.0:
                sigma_used, eps_used = 0.0, 0.0
            else:
                sigma_used = calib.sigma_for_budget(distance, epsilon=epsilon, delta=delta, calibration=calibration)
                eps_used = epsilon
        else:
            sigma_used = sigma
            eps_used = calib.epsilon_for_residual(distance, sigma=sigma, delta=delta, calibration=calibration)
        published = _add_noise(step_params, noise_key, sigma_used)
    else:
        sigma_used, eps_used, published = 0.0, math.inf, step_params

    certificate = DeepCertificate(
        certified=certified, reasons=tuple(reasons), epsilon=float(eps_used), delta=delta, sigma=float(sigma_used),
        calibration=calibration, bound=bound, distance_bound=float(distance), l2_reg=l2_reg, damping=damping,
        num_retained=num_retained, num_removed=int(forget.size), solver=solver,
        solver_steps=int(out.result.steps), solver_converged=converged, solve_error=solve_error, step_norm=step_norm,
        gradient_residual=rho, min_eigenvalue=eig_w.minimum, min_eigenvalue_unlearned=eig_u.minimum,
        max_eigenvalue=eig_w.maximum, hessian_lipschitz=float(lipschitz),
        norm_radius=math.nan if norm_radius is None else norm_radius, param_norm=param_norm,
        constants=tuple(constants), assumptions=tuple(assumptions))
    cert_seconds += time.perf_counter() - check_start
    if not certified and on_failure == "raise":
        raise CertificationError(str(certificate))
    after.setflags(write=False)
    return DeepUnlearnResult(params=published, step_params=step_params, retained=after, certificate=certificate,
                             seconds=seconds, certificate_seconds=cert_seconds)


# ----------------------------------------------------------------------------------------------------
# Validation helpers.


def _check_loss(loss):
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _check_int(name, value, *, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name, value, *, minimum, strict=False):
    if isinstance(value, (bool, np.bool_)):  # ValueError for every bad input: one type for callers
        raise ValueError(f"{name} must be a real number, got the bool {value!r}")  # noqa: TRY004
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x) or x < minimum or (strict and x == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {op} {minimum}, got {value!r}")
    return x


def _cast(params, dtype):
    return jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)


def _rows(X, y, weights, loss):
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d (n, d) array, got shape {X.shape}")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if loss == "softmax" and not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"loss='softmax' needs integer labels 0..K-1, got y of dtype {y.dtype}; pass y.astype(int)")
    if loss == "logistic":
        values = np.unique(np.asarray(y))
        if not set(values.tolist()) <= {-1.0, 1.0}:
            raise ValueError(f"loss='logistic' needs labels +-1, got values {values[:5].tolist()}")
        y = y.astype(X.dtype)
    if weights is None:
        weights = jnp.ones(X.shape[0], X.dtype)
    else:
        weights = jnp.asarray(weights)
        if weights.shape != (X.shape[0],):
            raise ValueError(f"weights must have shape ({X.shape[0]},), got {weights.shape}")
        weights = weights.astype(X.dtype)
    return X, y, weights


def _retained_mask(retained, n):
    if retained is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(retained)
    if mask.shape != (n,) or mask.dtype != np.bool_:
        raise ValueError(f"retained must be a boolean mask of shape ({n},), got dtype {mask.dtype} shape {mask.shape}")
    return mask.copy()


def _forget_indices(forget, retained):
    idx = np.asarray(forget)
    if idx.ndim == 0:
        idx = idx.reshape(1)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"forget must be a 1-d sequence of row indices, got {forget!r}")
    n = retained.shape[0]
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ValueError(f"forget holds indices outside [0, {n}): {bad[:5].tolist()}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"forget holds repeated indices: {idx.tolist()[:10]}; pass each row once")
    gone = idx[~retained[idx]]
    if gone.size:
        raise ValueError(f"forget holds rows that are not retained (already removed): {gone[:5].tolist()}")
    return idx.astype(np.int64)
