"""Curvature of the objective: Hessian-vector products and dense GLM Hessians.

For a GLM loss the Hessian of the sum-convention objective over the retained rows is::

    H = sum_i weights_i (x_i x_i^T) (x) A(z_i) + lambda * n * I,       z_i = x_i @ params,

where ``A(z)`` is the loss curvature in the predictor (a scalar for logistic/squared, ``diag(p) - p p^T``
for softmax) and ``(x)`` the Kronecker product. For scalar losses this is ``X^T S X + lambda n I`` with
``S = diag(weights * l''(z))``. The perturbation ``b`` is linear and does not enter ``H``.

Dense Hessians act on ``params.ravel()`` (row-major, so for (d, K) parameters the index is ``a * K + k``).

References:
  Pearlmutter, Fast exact multiplication by the Hessian, Neural Computation 1994.
  Guo et al., ICML 2020, arXiv:1911.03030.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from certunlearn.losses import Loss, get_loss

Array = jax.Array

__all__ = ["hvp", "glm_hvp", "dense_hessian"]


def hvp(fun: Callable, params, vector):
    """Hessian-vector product of a scalar function of a pytree, forward-over-reverse.

    ``hvp(f, w, v) = d/dt grad f(w + t v) |_{t=0}``: one ``jvp`` of ``grad f``, costing a small constant
    times one gradient evaluation and never forming the Hessian.

    >>> import jax.numpy as jnp
    >>> f = lambda w: jnp.sum(w ** 3)
    >>> hvp(f, jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0])).tolist()  # 6 w * v
    [6.0, 12.0]
    """
    return jax.jvp(jax.grad(fun), (params,), (vector,))[1]


def glm_hvp(params, X, y, weights, vector, *, loss: str | Loss, l2_reg) -> Array:
    """``H v`` for the GLM objective, in closed form: ``X^T (weights * A(z) (X v)) + lambda n v``.

    Two passes over ``X`` and no autodiff; agrees with :func:`hvp` of
    :func:`certunlearn.objective.objective` (tested).
    """
    del y  # The curvature of these losses does not depend on the labels.
    loss = get_loss(loss)
    n = jnp.sum(weights)
    z = X @ params
    q = loss.curvature_vp(z, X @ vector)
    q = q * (weights[:, None] if q.ndim == 2 else weights)
    data = (q.T @ X).T if q.ndim == 2 else q @ X
    return data + l2_reg * n * vector


def dense_hessian(params, X, y, weights, *, loss: str | Loss, l2_reg) -> Array:
    """The (p, p) Hessian of the objective over the retained rows, p = params.size.

    Scalar losses: ``X^T diag(weights * l''(z)) X + lambda n I`` as one matrix product, O(n d^2).
    Softmax: the K x K blocks ``X^T diag(weights * A_i[k, l]) X`` computed one block at a time
    (``lax.map``, so memory stays O(n d + (dK)^2)), O(K^2 n d^2).
    """
    del y
    loss = get_loss(loss)
    n = jnp.sum(weights)
    z = X @ params
    p = params.size
    if not loss.multiclass:
        s = weights * loss.curvature_diag(z)
        data = (X * s[:, None]).T @ X
    else:
        num_classes = params.shape[1]
        d = X.shape[1]
        eye = jnp.eye(num_classes, dtype=X.dtype)
        # A(z_i) e_l for every class l: (K, n, K) -> the (n, K, K) curvature blocks.
        curv = jax.vmap(lambda e: loss.curvature_vp(z, jnp.broadcast_to(e, z.shape)))(eye)
        curv = jnp.transpose(curv, (1, 2, 0)) * weights[:, None, None]
        flat = curv.reshape(X.shape[0], num_classes * num_classes).T

        blocks = jax.lax.map(lambda c: (X * c[:, None]).T @ X, flat)  # (K*K, d, d)
        blocks = blocks.reshape(num_classes, num_classes, d, d)
        data = jnp.transpose(blocks, (2, 0, 3, 1)).reshape(p, p)
    return data + l2_reg * n * jnp.eye(p, dtype=data.dtype)
