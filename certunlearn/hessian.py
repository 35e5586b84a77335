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

__all__ = ["hvp", "glm_hvp", "glm_hvp_operator", "dense_hessian", "curvature_gram"]


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

    Three passes over ``X`` (``X params``, ``X v``, ``X^T q``) and no autodiff; agrees with :func:`hvp` of
    :func:`certunlearn.objective.objective` (tested). For many products at the same ``params`` use
    :func:`glm_hvp_operator`, which computes ``X params`` once.
    """
    del y  # The curvature of these losses does not depend on the labels.
    return glm_hvp_operator(params, X, weights, loss=loss, l2_reg=l2_reg)(vector)


def glm_hvp_operator(params, X, weights, *, loss: str | Loss, l2_reg) -> Callable[[Array], Array]:
    """``v -> H v`` at fixed ``params``, with the predictor ``X params`` computed once, outside the
    returned function: inside a solver loop (:func:`certunlearn.solvers.conjugate_gradient`) each product
    then costs two passes over ``X`` instead of three.
    """
    loss = get_loss(loss)
    n = jnp.sum(weights)
    z = X @ params

    def matvec(vector):
        q = loss.curvature_vp(z, X @ vector)
        q = q * (weights[:, None] if q.ndim == 2 else weights)
        data = (q.T @ X).T if q.ndim == 2 else q @ X
        return data + l2_reg * n * vector

    return matvec


def dense_hessian(params, X, y, weights, *, loss: str | Loss, l2_reg) -> Array:
    """The (p, p) Hessian of the objective over the retained rows, p = params.size.

    Scalar losses: ``X^T diag(weights * l''(z)) X + lambda n I`` as one matrix product, O(n d^2).
    Softmax: the K x K blocks ``X^T diag(weights * A_i[k, l]) X`` computed one block at a time
    (``lax.map``, so memory stays O(n d + (dK)^2)), O(K^2 n d^2).
    """
    del y
    n = jnp.sum(weights)
    data = curvature_gram(X, X @ params, weights, loss=loss)
    return data + l2_reg * n * jnp.eye(data.shape[0], dtype=data.dtype)


def curvature_gram(Z, logits, weights, *, loss: str | Loss) -> Array:
    """``sum_i weights_i (z_i z_i^T) (x) A(logits_i)`` for the rows ``z_i`` of ``Z`` (n, r): (rK, rK).

    The data part of :func:`dense_hessian` (``Z = X``, ``logits = X params``), also used on projected
    rows ``Z = X Q`` (:func:`certunlearn.curvature.projected_preconditioner`). Same layout as
    :func:`dense_hessian`: index ``a * K + k``.
    """
    loss = get_loss(loss)
    if not loss.multiclass:
        s = weights * loss.curvature_diag(logits)
        return (Z * s[:, None]).T @ Z
    num_classes = logits.shape[1]
    r = Z.shape[1]
    eye = jnp.eye(num_classes, dtype=Z.dtype)
    # A(z_i) e_l for every class l: (K, n, K) -> the (n, K, K) curvature blocks.
    curv = jax.vmap(lambda e: loss.curvature_vp(logits, jnp.broadcast_to(e, logits.shape)))(eye)
    curv = jnp.transpose(curv, (1, 2, 0)) * weights[:, None, None]
    flat = curv.reshape(Z.shape[0], num_classes * num_classes).T
    blocks = jax.lax.map(lambda c: (Z * c[:, None]).T @ Z, flat)  # (K*K, r, r)
    blocks = blocks.reshape(num_classes, num_classes, r, r)
    return jnp.transpose(blocks, (2, 0, 3, 1)).reshape(r * num_classes, r * num_classes)
