"""A cached, downdatable inverse of the Hessian, for fast sequential removals; CG preconditioners.

Rebuilding and factorising ``H = grad^2 L(w; D')`` for every removal costs ``O(n d^2 + d^3)``. Instead we
keep the Hessian ``H_ref`` and its inverse, built once, at parameters ``w_ref`` on the rows retained
then, and *downdate* it when rows are removed, by the Woodbury identity::

    H_ref - V V^T,   V = [ x_j (x) B_j ]_{j removed},  B_j B_j^T = A(x_j^T w_ref)  (the loss curvature)
    (H_ref - V V^T)^{-1} v = H_ref^{-1} v + Z C^{-1} Z^T v,    Z = H_ref^{-1} V,   C = I - V^T Z

(``B_j = sqrt(l'')`` for scalar losses; ``diag(sqrt p) (I - sqrt p sqrt p^T)`` for softmax, since
``diag(p) - p p^T = B B^T`` with ``I - sqrt p sqrt p^T`` a projection.) Downdating one row costs one
product with the cached inverse, ``O(p^2)``, plus ``O(p c^2)`` for the capacitance ``C`` (``c`` columns in use).

The downdated matrix is exact for the rows but *stale* in the parameters (``w`` drifts from ``w_ref``
after every step) and in the regulariser (``lambda n`` shrinks with ``n``), so it is used as the
**preconditioner** of conjugate gradients on the true Hessian-vector product at the current ``w``
(:func:`certunlearn.removal.cached_newton_step`): CG starts from ``M^{-1} b`` and typically needs 0-2
iterations. The certificate recomputes the solve error ``||H u - Delta||`` with the true Hessian, so
staleness costs residual budget, never soundness. The cache is refreshed (rebuilt at the current
parameters) when its column capacity is used up or CG starts to need many iterations.

Arrays have static shapes (``capacity`` columns, unused ones zero), so a sequence of removals compiles
once per removal batch-size bucket.

The cache stores ``H_ref`` and its explicit inverse (from its Cholesky factor) rather than the factor
alone. An explicit inverse is usually avoided because its solutions are less accurate; here that only
costs certificate budget, never soundness, since every certified solve error is recomputed with
``H_ref`` itself (:func:`apply_matrix`), and at ``cond(H) ~ 1e3`` the loss is ~1e-13 relative. It buys
speed: on 2 CPU cores a Cholesky solve (two XLA triangular solves) of one 784-vector takes ~2.3 ms
against ~0.2 ms for a matrix-vector product with the inverse (``python -m benchmarks.profile_cached``
times both), and a removal needs two solves.

:class:`ProjectedPreconditioner` and :class:`KroneckerPreconditioner` are cheaper approximations of the
Hessian, used only to precondition conjugate gradients ("cg" path), where any SPD approximation is
valid. :func:`apply_preconditioner` applies the inverse of any of the three.
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
    "CacheState",
    "KroneckerPreconditioner",
    "ProjectedPreconditioner",
    "apply_inverse",
    "apply_kronecker_inverse",
    "apply_matrix",
    "apply_preconditioner",
    "apply_projected_inverse",
    "build_cache",
    "columns_per_row",
    "downdate",
    "kronecker_preconditioner",
    "projected_preconditioner",
    "projected_preconditioner_at",
    "projection_basis",
    "projection_rank",
    "drift_rounding",
    "forget_drift",
    "state",
    "track_drift",
    "with_state",
]


class CurvatureCache(NamedTuple):
    """Woodbury-downdated Hessian and inverse (module docstring). A pytree.

    Attributes:
      params_ref: ``w_ref``, where the curvature was evaluated.
      matrix: (p, p) ``H_ref``, the Hessian at ``w_ref`` on the rows retained then.
      inverse: (p, p) ``H_ref^{-1}``, from the Cholesky factor of ``H_ref`` (NaN if it is not numerically
        positive definite, which makes every solve error NaN and so refuses certification).
      cols: (p, c) the columns ``V`` of removed rows (zeros where unused).
      solved: (p, c) ``Z = H_ref^{-1} V``.
      cap_factor: (c, c) lower Cholesky factor of ``C = I - V^T Z``.
      used: number of columns in use.
      num_ref: number of rows retained when the cache was built (``n_ref``; ``H_ref`` holds
        ``lambda n_ref I``).
      drift_logits: (n,) or (n, K): ``X (w - w_ref)`` accumulated in floating point as the sum of
        ``X u_j`` over the steps ``u_j`` taken since the build (:func:`track_drift`), so that a step's
        staleness bound needs no pass over the data beyond ``X u``.
      drift_steps: ``sum_j ||u_j||``, which bounds the rounding error of ``drift_logits``.
    """

    params_ref: Array
    matrix: Array
    inverse: Array
    cols: Array
    solved: Array
    cap_factor: Array
    used: Array
    num_ref: Array
    drift_logits: Array
    drift_steps: Array


class CacheState(NamedTuple):
    """The fields of a :class:`CurvatureCache` that a removal changes.

    Jitted removal steps return these instead of the whole cache: XLA copies every output buffer, and
    copying the unchanged (p, p) ``matrix`` and ``inverse`` would cost more than the downdate itself
    (~1 ms at p = 784). :func:`with_state` puts them back, outside ``jit``.
    """

    cols: Array
    solved: Array
    cap_factor: Array
    used: Array
    drift_logits: Array
    drift_steps: Array


def state(cache: CurvatureCache) -> CacheState:
    """The :class:`CacheState` fields of ``cache``."""
    return CacheState(*(getattr(cache, f) for f in CacheState._fields))


def with_state(cache: CurvatureCache, part: CacheState) -> CurvatureCache:
    """``cache`` with its :class:`CacheState` fields replaced by ``part``."""
    return cache._replace(**part._asdict())


def track_drift(cache: CurvatureCache, step_logits, step_norm) -> CurvatureCache:
    """Adds a published step ``u`` (``step_logits = X u``, ``step_norm = ||u||``) to the drift record."""
    return cache._replace(drift_logits=cache.drift_logits + step_logits, drift_steps=cache.drift_steps + step_norm)


def forget_drift(cache: CurvatureCache) -> CurvatureCache:
    """Marks the drift record unusable (``drift_steps = inf``), for steps that do not compute ``X u``; a
    bound that used it would then be infinite, i.e. would certify nothing, rather than wrong."""
    return cache._replace(drift_steps=jnp.full_like(cache.drift_steps, jnp.inf))


def drift_rounding(cache: CurvatureCache, d: int, max_row_norm):
    """``E`` with ``|| x_i^T (w - w_ref) - drift_logits_i || <= E`` for every row (``||x_i|| <= max_row_norm``).

    Each step adds ``fl(x_i^T fl(w_j - w_{j-1}))``: the difference is rounded (``u ||w_j - w_{j-1}||``), the
    dot product errs by ``gamma_d ||x_i|| ||u_j||``, and each accumulation by ``u`` times the running sum,
    at most ``||x_i|| sum_j ||u_j||``. With at most ``c`` (the capacity) steps since the build, the total is
    ``gamma_{d + c + 2} max_row_norm sum_j ||u_j||``, doubled for the rounding of ``sum_j ||u_j||`` itself
    (Higham, Sec. 3.1).
    """
    u = jnp.finfo(cache.drift_logits.dtype).eps / 2
    k = d + cache.cols.shape[1] + 2
    return 2 * (k * u / (1 - k * u)) * max_row_norm * cache.drift_steps


def columns_per_row(params_shape) -> int:
    """Woodbury columns one removed row needs: 1 for (d,) parameters, K for (d, K)."""
    return 1 if len(params_shape) == 1 else params_shape[1]


@functools.partial(jax.jit, static_argnames=("loss", "capacity"))
def build_cache(params, X, y, keep, l2_reg, *, loss: str, capacity: int) -> CurvatureCache:
    """The Hessian at ``params`` on the rows ``keep`` and its inverse; ``capacity`` Woodbury columns."""
    H = hessian.dense_hessian(params, X, y, keep, loss=loss, l2_reg=l2_reg)
    p = H.shape[0]
    inverse = _spd_inverse(H)
    zeros = jnp.zeros((p, capacity), H.dtype)
    eye = jnp.eye(capacity, dtype=H.dtype)
    drift = jnp.zeros(X.shape[:1] + params.shape[1:], H.dtype)
    return CurvatureCache(params, H, inverse, zeros, zeros, eye, jnp.asarray(0, jnp.int32), jnp.sum(keep), drift,
                          jnp.zeros((), H.dtype))


def _spd_inverse(H):
    """``H^{-1}`` through the Cholesky factor, symmetrised; NaN if ``H`` is not numerically SPD."""
    factor = jnp.linalg.cholesky(H)
    inverse = jax.scipy.linalg.cho_solve((factor, True), jnp.eye(H.shape[0], dtype=H.dtype))
    return 0.5 * (inverse + inverse.T)


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
    solved_new = cache.inverse @ new
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
    base = cache.inverse @ flat
    coef = jax.scipy.linalg.cho_solve((cache.cap_factor, True), cache.cols.T @ base)
    return (base + cache.solved @ coef).reshape(v.shape)


def apply_matrix(cache: CurvatureCache, v):
    """``(H_ref - V V^T) v``, from the cached pieces, ``O(p^2 + p c)``."""
    flat = v.reshape(-1)
    out = cache.matrix @ flat - cache.cols @ (cache.cols.T @ flat)
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


class ProjectedPreconditioner(NamedTuple):
    """The subsample Hessian on the top-``r`` principal directions of the data, ``lambda n`` elsewhere.

    With ``Q`` (d, r) the top eigenvectors of the subsample's Gram matrix ``X_s^T X_s`` and
    ``P = Q Q^T (x) I_K`` (``I_1`` for scalar losses)::

        M = (Q (x) I) H_r (Q (x) I)^T + lambda n (I - P),   H_r = (Q (x) I)^T H_s (Q (x) I)

    where ``H_s = (n / n_s) sum_{i in S} (x_i x_i^T) (x) A(z_i) + lambda n I`` is the rescaled Hessian of a
    row subsample ``S``. ``M`` is SPD, so it is a valid preconditioner; it neglects the data curvature
    outside the top directions, where for image data it is small against ``lambda n`` (Fashion-MNIST:
    the 100th Gram eigenvalue is ~0.3% of the first). ``M^{-1} v = (Q (x) I) H_r^{-1} (Q (x) I)^T v +
    (v - P v) / (lambda n)``, ``O(d r K + (r K)^2)`` per application instead of ``O(p^2)`` for the dense
    subsample Hessian (two 7,840-wide triangular solves, ~0.5 s on 2 CPU cores, for softmax on
    MNIST-size data), and it needs *fewer* CG iterations than that dense one because ``H_r`` can afford a
    4x larger subsample. With ``r = d`` it is the subsample Hessian itself. A pytree.
    """

    basis: Array  # (d, r) orthonormal: Q
    inverse: Array  # (r K, r K): H_r^{-1}
    shift: Array  # lambda * n


def projection_rank(d: int, num_classes: int = 1, *, size: int = 1024) -> int:
    """The rank ``r`` of :class:`ProjectedPreconditioner`: the largest with ``r K <= size``, at most ``d``."""
    return int(min(d, max(1, size // max(num_classes, 1))))


@functools.partial(jax.jit, static_argnames=("loss", "rank"))
def projected_preconditioner(params, X_sub, weights_sub, scale, shift, *, loss: str, rank: int
                             ) -> ProjectedPreconditioner:
    """Builds :class:`ProjectedPreconditioner` from a row subsample, ``O(n_s d^2 + d^3 + n_s (r K)^2)``.

    Args:
      params: current parameters. X_sub, weights_sub: subsampled rows and their 0/1 weights.
      scale: ``n / n_s`` (retained rows over retained subsample rows). shift: ``lambda n``.
      rank: ``r`` (static), e.g. :func:`projection_rank`.
    """
    basis = projection_basis(X_sub, weights_sub, rank=rank)
    return projected_preconditioner_at(basis, params, X_sub, weights_sub, scale, shift, loss=loss)


def projection_basis(X_sub, weights_sub, *, rank: int):
    """The top ``rank`` eigenvectors of the Gram matrix ``X_s^T diag(weights) X_s``, (d, rank).

    It does not depend on the parameters, so a training loop computes it once (:mod:`certunlearn.train`).
    """
    gram = (X_sub * weights_sub[:, None]).T @ X_sub
    _, vectors = jnp.linalg.eigh(0.5 * (gram + gram.T))  # ascending eigenvalues
    return vectors[:, ::-1][:, :rank]


def projected_preconditioner_at(basis, params, X_sub, weights_sub, scale, shift, *, loss: str
                                ) -> ProjectedPreconditioner:
    """:class:`ProjectedPreconditioner` on a given ``basis`` (:func:`projection_basis`), ``O(n_s (r K)^2)``."""
    H_r = scale * hessian.curvature_gram(X_sub @ basis, X_sub @ params, weights_sub, loss=loss)
    H_r = H_r + shift * jnp.eye(H_r.shape[0], dtype=H_r.dtype)
    return ProjectedPreconditioner(basis, _spd_inverse(H_r), jnp.asarray(shift, H_r.dtype))


def apply_projected_inverse(pre: ProjectedPreconditioner, v):
    """``M^{-1} v`` for ``v`` of shape (d,) or (d, K)."""
    mat = v if v.ndim == 2 else v[:, None]
    coef = pre.basis.T @ mat  # (r, K)
    solved = (pre.inverse @ coef.reshape(-1)).reshape(coef.shape)
    out = pre.basis @ solved + (mat - pre.basis @ coef) / pre.shift
    return out if v.ndim == 2 else out[:, 0]


def apply_preconditioner(pre, v):
    """``M^{-1} v`` for a :class:`CurvatureCache`, :class:`ProjectedPreconditioner` or
    :class:`KroneckerPreconditioner` (dispatch on the type, at trace time)."""
    if isinstance(pre, KroneckerPreconditioner):
        return apply_kronecker_inverse(pre, v)
    if isinstance(pre, ProjectedPreconditioner):
        return apply_projected_inverse(pre, v)
    if isinstance(pre, CurvatureCache):
        return apply_inverse(pre, v)
    raise TypeError(f"not a preconditioner: {type(pre).__name__}")
