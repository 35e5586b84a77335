"""The regularised, perturbed objective over a retained-row mask.

Sum convention (Guo et al. 2020, Sec. 3), with ``weights`` the 0/1 mask of retained rows and
``n = sum(weights)`` the number of *retained* rows::

    L(w; D)   = sum_i weights_i * l(x_i @ w, y_i) + (l2_reg * n / 2) ||w||^2
    L_b(w; D) = L(w; D) + <b, w>                      (b = ``perturbation``; loss perturbation)

Removing rows only flips mask entries, so array shapes never change and a sequence of removals compiles
once. Every function is pure and jit-compatible; ``params`` is ``(d,)`` (logistic, squared) or ``(d, K)``
(softmax), and ``perturbation`` has the shape of ``params`` (pass zeros for the unperturbed objective).

References:
  Guo et al., Certified Data Removal from Machine Learning Models, ICML 2020, arXiv:1911.03030.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from certunlearn.losses import Loss, get_loss

Array = jax.Array

__all__ = [
    "objective",
    "gradient",
    "gradient_norm",
    "gradient_norm_upper_bound",
    "gradient_rounding_bound",
    "hvp_rounding_bound",
    "removed_gradient",
]

#: ``sup_z ||A(z)||_2`` of each loss's curvature ``A = d^2 l / dz^2`` (logistic 1/4; softmax 1/2 by
#: Gershgorin, see :mod:`certunlearn.losses`; squared 1).
CURVATURE_MAX = {"logistic": 0.25, "softmax": 0.5, "squared": 1.0}


def _predictor(params: Array, X: Array) -> Array:
    return X @ params


def _vdot(a: Array, b: Array) -> Array:
    return jnp.sum(a * b)


def objective(params, X, y, weights, perturbation, *, loss: str | Loss, l2_reg) -> Array:
    """``L_b(params)`` in the sum convention (module docstring).

    Args:
      params: model parameters, (d,) or (d, K).
      X: (n, d) data matrix. y: (n,) labels.
      weights: (n,) retained-row mask (0/1, float).
      perturbation: the noise vector ``b``, same shape as ``params``.
      loss: a :class:`~certunlearn.losses.Loss` or its name.
      l2_reg: ``lambda``; the regulariser is ``lambda * sum(weights) / 2 * ||params||^2``.

    >>> import jax.numpy as jnp
    >>> X = jnp.eye(2); y = jnp.array([1.0, -1.0]); w = jnp.zeros(2)
    >>> float(objective(w, X, y, jnp.ones(2), jnp.zeros(2), loss="logistic", l2_reg=0.1))  # 2 log 2
    1.3862943611198906
    """
    loss = get_loss(loss)
    n = jnp.sum(weights)
    data_term = jnp.sum(weights * loss.value(_predictor(params, X), y))
    return data_term + 0.5 * l2_reg * n * _vdot(params, params) + _vdot(perturbation, params)


def gradient(params, X, y, weights, perturbation, *, loss: str | Loss, l2_reg) -> Array:
    """``grad L_b(params) = X^T (weights * l'(X params)) + lambda n params + b`` (same shape as params).

    Written explicitly (not with ``jax.grad``) as ``r @ X``, which is the fast form on CPU; the tests
    compare it with ``jax.grad(objective)``.
    """
    loss = get_loss(loss)
    n = jnp.sum(weights)
    r = loss.dz(_predictor(params, X), y)
    r = r * (weights[:, None] if r.ndim == 2 else weights)
    data_grad = (r.T @ X).T if r.ndim == 2 else r @ X
    return data_grad + l2_reg * n * params + perturbation


def gradient_norm(params, X, y, weights, perturbation, *, loss: str | Loss, l2_reg) -> Array:
    """``||grad L_b(params; retained rows)||_2`` (Frobenius norm for matrix parameters)."""
    g = gradient(params, X, y, weights, perturbation, loss=loss, l2_reg=l2_reg)
    return jnp.sqrt(_vdot(g, g))


def removed_gradient(params, X, y, removed, *, loss: str | Loss, l2_reg) -> Array:
    """Guo et al.'s ``Delta = sum_{j in U} (lambda * params + grad l(params; x_j, y_j))``.

    ``removed`` is the 0/1 mask of the rows U being removed. ``b`` cancels out of Delta because it is
    linear, so no perturbation is needed. Equivalently ``Delta = grad L(w; D) - grad L(w; D \\ U)``.
    """
    return gradient(params, X, y, removed, jnp.zeros_like(params), loss=loss, l2_reg=l2_reg)


# ----------------------------------------------------------------------------------------------------
# Floating-point rounding: what turns a computed residual into a proven upper bound.


def _unit_roundoff(dtype):
    return jnp.finfo(dtype).eps / 2


def _gamma(k, u):
    """Higham's ``gamma_k = k u / (1 - k u)``: the relative error of a k-term sum or dot product."""
    return k * u / (1 - k * u)


def _rows(a):
    """Per-row norms of a (n,) or (n, K) array."""
    return jnp.abs(a) if a.ndim == 1 else jnp.sqrt(jnp.sum(a * a, axis=1))


def _norm(a):
    return jnp.sqrt(jnp.sum(a * a))


def gradient_rounding_bound(params, X, y, weights, perturbation, *, loss: str | Loss, l2_reg) -> Array:
    """``E`` with ``||fl(g) - g|| <= E`` and ``|fl(||g||) - ||g||| <= E``, ``g = grad L_b(params)`` (exact
    arithmetic on the given float arrays) and ``fl`` the computation of :func:`gradient_norm` in X's dtype.

    Standard error analysis (Higham, *Accuracy and Stability of Numerical Algorithms*, Sec. 3.1, 3.5),
    valid for any summation order, with ``u`` the unit roundoff and ``gamma_k = k u / (1 - k u)``:

    * ``z_i = x_i^T w``: ``|dz_i| <= gamma_d ||x_i|| ||w||`` (per class for softmax, so
      ``||dz_i|| <= gamma_d ||x_i|| ||w||_F``);
    * ``r_i = l'(z_i)``: ``||dr_i|| <= A_max ||dz_i|| + 4 u ||r_i||`` (``A_max = sup ||l''||``, the
      derivative's Lipschitz constant; 4 ulps for its evaluation);
    * ``sum_i w_i r_i x_i``: ``gamma_{n+1} sum_i |w_i| ||r_i|| ||x_i|| + (1 + gamma_{n+1}) sum_i |w_i| ||dr_i||
      ||x_i||``; ``lambda n w``: ``3 u lambda n ||w||``; the two additions: ``2 u`` times the sum of the
      norms; the final norm: ``gamma_{p+2}`` relative.

    Row norms are computed in floating point too, so they are inflated by ``1 + gamma_{d+1}``; the whole
    is doubled for safety. About ``(n + p) u`` times the sum of the terms' magnitudes: ~1e-9 for
    n = 12,000 rows at float64, far below any useful residual budget.
    """
    loss = get_loss(loss)
    n_rows, d = X.shape
    u = _unit_roundoff(X.dtype)
    xn = jnp.sqrt(jnp.sum(X * X, axis=1)) * (1 + _gamma(d + 1, u))
    wn = _norm(params)
    aw = jnp.abs(weights)
    r = _rows(loss.dz(_predictor(params, X), y))
    dr = CURVATURE_MAX[loss.name] * _gamma(d, u) * xn * wn + 4 * u * r
    data = jnp.sum(aw * r * xn)
    reg = l2_reg * jnp.sum(aw) * wn
    b = _norm(perturbation)
    g_n1 = _gamma(n_rows + 1, u)
    e_vec = g_n1 * data + (1 + g_n1) * jnp.sum(aw * dr * xn) + 3 * u * reg + 2 * u * (data + reg + b)
    return 2 * (e_vec + _gamma(params.size + 2, u) * (data + reg + b + e_vec))


def gradient_norm_upper_bound(params, X, y, weights, perturbation, *, loss: str | Loss, l2_reg) -> Array:
    """A proven upper bound on the exact ``||grad L_b(params)||``: the computed norm plus its rounding bound.

    >>> import jax.numpy as jnp
    >>> X = jnp.array([[0.6, 0.8], [1.0, 0.0]]); y = jnp.array([1.0, -1.0]); w = jnp.zeros(2)
    >>> args = (w, X, y, jnp.ones(2), jnp.zeros(2))
    >>> bool(gradient_norm_upper_bound(*args, loss="logistic", l2_reg=0.1) > gradient_norm(*args, loss="logistic", l2_reg=0.1))
    True
    """
    value = gradient_norm(params, X, y, weights, perturbation, loss=loss, l2_reg=l2_reg)
    return value + gradient_rounding_bound(params, X, y, weights, perturbation, loss=loss, l2_reg=l2_reg)


def hvp_rounding_bound(params, X, weights, vector, *, loss: str | Loss, l2_reg) -> tuple[Array, Array]:
    """``(E, N)`` with ``||fl(H v) - H v|| <= E`` and ``||H v|| <= N`` for :func:`certunlearn.hessian.glm_hvp`.

    As :func:`gradient_rounding_bound`: ``q_i = A(z_i) (x_i^T v)`` carries the error of ``z_i`` through the
    curvature's Lipschitz constant ``gamma`` and that of ``x_i^T v`` through ``A_max``; then the weighted
    sum over rows (``gamma_{n+1}``), ``lambda n v`` (``3 u``) and one addition (``2 u``). Doubled for safety.
    """
    loss = get_loss(loss)
    n_rows, d = X.shape
    u = _unit_roundoff(X.dtype)
    xn = jnp.sqrt(jnp.sum(X * X, axis=1)) * (1 + _gamma(d + 1, u))
    wn, vn = _norm(params), _norm(vector)
    aw = jnp.abs(weights)
    a_max = CURVATURE_MAX[loss.name]
    xv = _rows(_predictor(vector, X))
    q = a_max * xv  # ||q_i|| <= A_max ||x_i^T v||
    dq = a_max * _gamma(d, u) * xn * vn + loss.gamma * _gamma(d, u) * xn * wn * xv + 4 * u * q
    data = jnp.sum(aw * q * xn)
    reg = l2_reg * jnp.sum(aw) * vn
    g_n1 = _gamma(n_rows + 1, u)
    e = g_n1 * data + (1 + g_n1) * jnp.sum(aw * dq * xn) + 3 * u * reg + 2 * u * (data + reg)
    return 2 * e, data + reg
