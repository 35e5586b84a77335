"""A cached, downdatable factorisation of the Hessian, for fast sequential removals.

Rebuilding and factorising ``H = grad^2 L(w; D')`` for every removal costs ``O(n d^2 + d^3)``. Instead we
keep a Cholesky factor of the Hessian ``H_ref`` built once, at parameters ``w_ref`` on the rows retained
then, and *downdate* it when rows are removed, by the Woodbury identity::

    H_ref - V V^T,   V = [ x_j (x) B_j ]_{j removed},  B_j B_j^T = A(x_j^T w_ref)  (the loss curvature)
    (H_ref - V V^T)^{-1} v = H_ref^{-1} v + Z C^{-1} Z^T v,    Z = H_ref^{-1} V,   C = I - V^T Z

(``B_j = sqrt(l'')`` for scalar losses; ``diag(sqrt p) (I - sqrt p sqrt p^T)`` for softmax, since
``diag(p) - p p^T = B B^T`` with ``I - sqrt p sqrt p^T`` a projection.) Downdating one row costs two
triangular solves, ``O(p^2)``, plus ``O(p c^2)`` for the capacitance ``C`` (``c`` columns in use).

The downdated matrix is exact for the rows but *stale* in the parameters (``w`` drifts from ``w_ref``
after every step) and in the regulariser (``lambda n`` shrinks with ``n``), so it is used as the
**preconditioner** of conjugate gradients on the true Hessian-vector product at the current ``w``
(:func:`certunlearn.removal.cached_newton_step`): CG starts from ``M^{-1} b`` and typically needs 0-2
iterations. The certificate recomputes the solve error ``||H u - Delta||`` with the true Hessian, so
staleness costs residual budget, never soundness. The cache is refreshed (rebuilt at the current
parameters) when its column capacity is used up or CG starts to need many iterations.

Arrays have static shapes (``capacity`` columns, unused ones zero), so a sequence of removals compiles
once per removal batch-size bucket.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from certunlearn import hessian
from certunlearn.losses import get_loss

Array = jax.Array

__all__ = [
    "CurvatureCache",
    "KroneckerPreconditioner",
    "apply_inverse",
    "apply_kronecker_inverse",
    "apply_matrix",
    "build_cache",
    "columns_per_row",
    "downdate",
    "kronecker_preconditioner",
]


class CurvatureCache(NamedTuple):
    """Woodbury-downdated Cholesky factorisation (module docstring). A pytree.

    Attributes:
      params_ref: ``w_ref``, where the curvature was evaluated.
      factor: (p, p) lower Cholesky factor of ``H_ref``.
      cols: (p, c) the columns ``V`` of removed rows (zeros where unused).
      solved: (p, c) ``Z = H_ref^{-1} V``.
      cap_factor: (c, c) lower Cholesky factor of ``C = I - V^T Z``.
      used: number of columns in use.
      num_ref: number of rows retained when the factor was built (``n_ref``; the factor holds
        ``lambda n_ref I``).
    """

    params_ref: Array
    factor: Array
    cols: Array
    solved: Array
    cap_factor: Array
    used: Array
    num_ref: Array


def columns_per_row(params_shape) -> int:
    """Woodbury columns one removed row needs: 1 for (d,) parameters, K for (d, K)."""
    return 1 if len(params_shape) == 1 else params_shape[1]


@functools.partial(jax.jit, static_argnames=("loss", "capacity"))
def build_cache(params, X, y, keep, l2_reg, *, loss: str, capacity: int) -> CurvatureCache:
    """Factorises the Hessian at ``params`` on the rows ``keep``; ``capacity`` Woodbury columns."""
    H = hessian.dense_hessian(params, X, y, keep, loss=loss, l2_reg=l2_reg)
    p = H.shape[0]
    factor = jnp.linalg.cholesky(H)
    zeros = jnp.zeros((p, capacity), H.dtype)
    eye = jnp.eye(capacity, dtype=H.dtype)
    return CurvatureCache(params, factor, zeros, zeros, eye, jnp.asarray(0, jnp.int32), jnp.sum(keep))


def _row_columns(params_ref, X_rows, weights, loss):
    """(p, r * m) columns ``x_j (x) B_j`` for the rows ``X_rows`` (zero for weight 0)."""
    loss = get_loss(loss)
    z = X_rows @ params_ref
    if not loss.multiclass:
        s = jnp.sqrt(jnp.maximum(weights * loss.curvature_diag(z), 0.0))
        return (X_rows * s[:, None]).T  # (d, m)
    p = jax.nn.softmax(z, axis=-1)
    sp = jnp.sqrt(p)
    num_classes = p.shape[-1]
    # B = diag(sqrt p) (I - sqrt p sqrt p^T): (m, K, K)
    B = sp[:, :, None] * (jnp.eye(num_classes, dtype=sp.dtype) - sp[:, :, None] * sp[:, None, :])
    B = B * jnp.sqrt(weights)[:, None, None]
    cols = jnp.einsum("ma,mkc->makc", X_rows, B)  # (m, d, K, K): column c of row m is [a, k]
    m, d = X_rows.shape
    return jnp.transpose(cols, (1, 2, 0, 3)).reshape(d * num_classes, m * num_classes)


@functools.partial(jax.jit, static_argnames=("loss",))
def downdate(cache: CurvatureCache, X_rows, weights, *, loss: str) -> CurvatureCache:
    """Removes the rows ``X_rows`` (weights 0/1; 0 = padding) from the cached curvature.

    Appends their ``k`` columns to ``V`` and extends the Cholesky factor of the capacitance ``C`` by
    ``k`` rows, ``O(p^2 k + p c k + c^2 k)``. The caller guarantees ``used + k <= capacity``.
    """
    new = _row_columns(cache.params_ref, X_rows, weights, loss)
    solved_new = jax.scipy.linalg.cho_solve((cache.factor, True), new)
    used, k = cache.used, new.shape[1]
    zero = jnp.zeros((), used.dtype)
    cols = jax.lax.dynamic_update_slice(cache.cols, new, (zero, used))
    solved = jax.lax.dynamic_update_slice(cache.solved, solved_new, (zero, used))
    # New columns of C = I - V^T Z; rows >= used + k are still zero columns of V.
    cross = -(cols.T @ solved_new)  # (c, k)
    below = (jnp.arange(cols.shape[1]) < used)[:, None]
    c12 = jnp.where(below, cross, 0.0)
    c22 = jax.lax.dynamic_slice(cross, (used, zero), (k, k)) + jnp.eye(k, dtype=cross.dtype)
    c22 = 0.5 * (c22 + c22.T)
    # Block Cholesky extension: L21^T = L11^{-1} C12, L22 = chol(C22 - L21 L21^T). The unused part of
    # the current factor is the identity, so a solve with the whole factor gives L11^{-1} C12.
    l21t = jax.scipy.linalg.solve_triangular(cache.cap_factor, c12, lower=True)
    l22 = jnp.linalg.cholesky(c22 - l21t.T @ l21t)
    rows = jax.lax.dynamic_update_slice(l21t.T, l22, (zero, used))
    cap_factor = jax.lax.dynamic_update_slice(cache.cap_factor, rows, (used, zero))
    return cache._replace(cols=cols, solved=solved, cap_factor=cap_factor, used=used + k)


def apply_inverse(cache: CurvatureCache, v):
    """``(H_ref - V V^T)^{-1} v`` for ``v`` shaped like the parameters."""
    flat = v.reshape(-1)
    base = jax.scipy.linalg.cho_solve((cache.factor, True), flat)
    coef = jax.scipy.linalg.cho_solve((cache.cap_factor, True), cache.cols.T @ base)
    return (base + cache.solved @ coef).reshape(v.shape)


def apply_matrix(cache: CurvatureCache, v):
    """``(H_ref - V V^T) v = L (L^T v) - V (V^T v)``, from the cached pieces, ``O(p^2 + p c)``."""
    flat = v.reshape(-1)
    out = cache.factor @ (cache.factor.T @ flat) - cache.cols @ (cache.cols.T @ flat)
    return out.reshape(v.shape)


class KroneckerPreconditioner(NamedTuple):
    """``M = c (G (x) A_bar) + lambda n I``, inverted exactly through two eigendecompositions. A pytree.

    ``G = X_s^T X_s * (n / n_s)`` is the (subsampled, rescaled) Gram matrix and ``A_bar`` the mean loss
    curvature ``A(z_i)`` over the subsample (a scalar for binary losses): the Kronecker-factored
    approximation ``sum_i x_i x_i^T (x) A_i ~ G (x) A_bar`` of K-FAC (Martens & Grosse, 2015). Built once
    in ``O(n_s d^2 + d^3 + K^3)``; applied in ``O(d^2 K + d K^2)``. Any SPD ``M`` is a valid preconditioner,
    so staleness slows conjugate gradients but never changes the solution or its certificate.
    """

    gram_vectors: Array  # (d, d)
    gram_values: Array  # (d,)
    curv_vectors: Array  # (K, K) (1 x 1 for scalar losses)
    curv_values: Array  # (K,)
    shift: Array  # lambda * n


@functools.partial(jax.jit, static_argnames=("loss",))
def kronecker_preconditioner(params, X_sub, weights_sub, scale, shift, *, loss: str) -> KroneckerPreconditioner:
    """Builds :class:`KroneckerPreconditioner` from a row subsample.

    Args:
      params: current parameters. X_sub, weights_sub: subsampled rows and their 0/1 weights.
      scale: ``n / n_s`` (retained rows over retained subsample rows). shift: ``lambda n``.
    """
    loss_ = get_loss(loss)
    z = X_sub @ params
    gram = scale * (X_sub * weights_sub[:, None]).T @ X_sub
    if loss_.multiclass:
        k = z.shape[1]
        eye = jnp.eye(k, dtype=z.dtype)
        curv = jax.vmap(lambda e: loss_.curvature_vp(z, jnp.broadcast_to(e, z.shape)))(eye)  # (K, n, K)
        curv = jnp.einsum("lnk,n->kl", curv, weights_sub) / jnp.maximum(jnp.sum(weights_sub), 1.0)
    else:
        curv = (jnp.sum(weights_sub * loss_.curvature_diag(z)) / jnp.maximum(jnp.sum(weights_sub), 1.0))[None, None]
    gram_values, gram_vectors = jnp.linalg.eigh(0.5 * (gram + gram.T))
    curv_values, curv_vectors = jnp.linalg.eigh(0.5 * (curv + curv.T))
    return KroneckerPreconditioner(
        gram_vectors, jnp.maximum(gram_values, 0.0), curv_vectors, jnp.maximum(curv_values, 0.0), shift
    )


def apply_kronecker_inverse(pre: KroneckerPreconditioner, v):
    """``M^{-1} v`` for ``v`` of shape (d,) or (d, K)."""
    mat = v if v.ndim == 2 else v[:, None]
    rotated = pre.gram_vectors.T @ mat @ pre.curv_vectors
    rotated = rotated / (pre.gram_values[:, None] * pre.curv_values[None, :] + pre.shift)
    out = pre.gram_vectors @ rotated @ pre.curv_vectors.T
    return out if v.ndim == 2 else out[:, 0]
