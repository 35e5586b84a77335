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

__all__ = ["objective", "gradient", "gradient_norm", "removed_gradient"]


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
