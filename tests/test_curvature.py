"""Cached Hessian inverse, Woodbury downdates and CG preconditioners against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certunlearn import curvature, hessian, solvers

import reference as ref


def _problem(loss, n=60, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    # Decaying column scales: a few principal directions carry most of the data, as in images.
    X = rng.normal(size=(n, d)) * (0.5 ** np.arange(d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if loss == "logistic":
        y = np.where(rng.normal(size=n) > 0, 1.0, -1.0)
        w = rng.normal(size=d)
    else:
        y = rng.integers(0, k, size=n).astype(np.int32)
        w = rng.normal(size=(d, k))
    return X, y, w


def _row_curvature(w, x, loss):
    """The Hessian term ``(x x^T) (x) A(x^T w)`` of one row, built independently with NumPy."""
    z = x @ w
    if loss == "logistic":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1 - s) * np.outer(x, x)
    p = np.exp(z - z.max()); p /= p.sum()
    return np.kron(np.outer(x, x), np.diag(p) - np.outer(p, p))


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_cache_inverse_and_downdates_match_numpy(loss):
    X, y, w = _problem(loss)
    n = len(y)
    lam = 0.05
    keep = np.ones(n)
    cache = curvature.build_cache(jnp.asarray(w), jnp.asarray(X), jnp.asarray(y), jnp.asarray(keep), lam,
                                  loss=loss, capacity=8 * curvature.columns_per_row(w.shape))
    H = ref.hessian(w, X, y, keep, lam, loss)
    np.testing.assert_allclose(np.asarray(cache.matrix), H, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(cache.inverse) @ H, np.eye(H.shape[0]), atol=1e-10)

    # Remove one row, then a padded batch of two (weight 0 = padding), then one more.
    rng = np.random.default_rng(1)
    M = H.copy()
    for rows, weights in (([3], [1.0]), ([7, 11, 0, 0], [1.0, 1.0, 0.0, 0.0]), ([20], [1.0])):
        cache = curvature.downdate(cache, jnp.asarray(X[rows]), jnp.asarray(weights), loss=loss)
        for r, wt in zip(rows, weights):
            M -= wt * _row_curvature(w, X[r], loss)
        v = rng.normal(size=w.shape)
        np.testing.assert_allclose(np.asarray(curvature.apply_matrix(cache, jnp.asarray(v))).ravel(),
                                   M @ v.ravel(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(curvature.apply_inverse(cache, jnp.asarray(v))).ravel(),
                                   np.linalg.solve(M, v.ravel()), rtol=1e-9, atol=1e-12)
    # Padding rows take (zero) columns too: 1 + 4 + 1 rows.
    assert int(cache.used) == 6 * curvature.columns_per_row(w.shape)


def test_cache_of_an_indefinite_matrix_is_nan_so_nothing_is_certified():
    X, y, w = _problem("logistic")
    # A negative regulariser makes H indefinite: the inverse must be NaN, not a silently wrong matrix.
    cache = curvature.build_cache(jnp.asarray(w), jnp.asarray(X), jnp.asarray(y), jnp.ones(len(y)), -1.0,
                                  loss="logistic", capacity=2)
    assert not np.all(np.isfinite(np.asarray(cache.inverse)))


def _projected_reference(w, X_sub, lam_n, scale, rank, loss):
    """``M^{-1}`` of :class:`ProjectedPreconditioner` as a dense matrix, built with NumPy."""
    d = X_sub.shape[1]
    k = 1 if w.ndim == 1 else w.shape[1]
    _, vecs = np.linalg.eigh(X_sub.T @ X_sub)
    Q = vecs[:, ::-1][:, :rank]
    Hs = scale * ref.hessian(w, X_sub, np.zeros(len(X_sub)), np.ones(len(X_sub)), 0.0, loss) + lam_n * np.eye(d * k)
    E = np.kron(Q, np.eye(k))  # (d K, r K), acting on w.ravel() (index a * K + k)
    H_r = E.T @ Hs @ E
    P = E @ E.T
    M = E @ H_r @ E.T + lam_n * (np.eye(d * k) - P)
    return np.linalg.inv(M), np.linalg.inv(Hs)


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
@pytest.mark.parametrize("rank", [2, 6])
def test_projected_preconditioner_matches_numpy(loss, rank):
    X, y, w = _problem(loss, n=80)
    lam_n, scale = 3.0, 2.5
    pre = curvature.projected_preconditioner(jnp.asarray(w), jnp.asarray(X), jnp.ones(len(y)), scale, lam_n,
                                             loss=loss, rank=rank)
    Minv, Hs_inv = _projected_reference(w, X, lam_n, scale, rank, loss)
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = rng.normal(size=w.shape)
        got = np.asarray(curvature.apply_preconditioner(pre, jnp.asarray(v))).ravel()
        np.testing.assert_allclose(got, Minv @ v.ravel(), rtol=1e-9, atol=1e-12)
        if rank == X.shape[1]:  # full rank: the subsample Hessian itself
            np.testing.assert_allclose(got, Hs_inv @ v.ravel(), rtol=1e-9, atol=1e-12)
    # M^{-1} is symmetric positive definite, as a preconditioner must be.
    eig = np.linalg.eigvalsh(0.5 * (Minv + Minv.T))
    assert eig.min() > 0


def test_projection_rank_caps_the_projected_size():
    assert curvature.projection_rank(784, 10) == 102
    assert curvature.projection_rank(784, 1) == 784
    assert curvature.projection_rank(3, 10, size=8) == 1


def test_projected_preconditioner_speeds_up_cg_to_the_same_solution():
    # Softmax on data with a few dominant directions and a small regulariser: ill-conditioned.
    rng = np.random.default_rng(3)
    n, d, k = 400, 30, 4
    X = rng.normal(size=(n, d)) * (0.7 ** np.arange(d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = rng.normal(size=(d, k))
    keep = np.ones(n)
    lam = 1e-4
    Xj, wj, keepj = jnp.asarray(X), jnp.asarray(w), jnp.asarray(keep)
    H = ref.hessian(w, X, np.zeros(n), keep, lam, "softmax")
    b = rng.normal(size=(d, k))
    matvec = hessian.glm_hvp_operator(wj, Xj, keepj, loss="softmax", l2_reg=lam)
    plain = solvers.conjugate_gradient(matvec, jnp.asarray(b), rtol=1e-10, maxiter=2000)
    sub = rng.choice(n, 200, replace=False)
    pre = curvature.projected_preconditioner(wj, Xj[sub], jnp.ones(200), n / 200, lam * n, loss="softmax", rank=8)
    fast = solvers.conjugate_gradient(matvec, jnp.asarray(b), rtol=1e-10, maxiter=2000,
                                      preconditioner=lambda v: curvature.apply_preconditioner(pre, v))
    exact = np.linalg.solve(H, b.ravel())
    for result in (plain, fast):
        assert bool(result.converged)
        np.testing.assert_allclose(np.asarray(result.x).ravel(), exact, rtol=1e-7, atol=1e-9)
    assert int(fast.steps) < int(plain.steps) / 2


def test_hvp_operator_matches_glm_hvp_and_dense_hessian():
    X, y, w = _problem("softmax")
    keep = (np.random.default_rng(4).random(len(y)) > 0.3).astype(float)
    v = np.random.default_rng(5).normal(size=w.shape)
    op = hessian.glm_hvp_operator(jnp.asarray(w), jnp.asarray(X), jnp.asarray(keep), loss="softmax", l2_reg=0.1)
    H = ref.hessian(w, X, y, keep, 0.1, "softmax")
    np.testing.assert_allclose(np.asarray(op(jnp.asarray(v))).ravel(), H @ v.ravel(), rtol=1e-12, atol=1e-13)


def test_apply_preconditioner_rejects_other_types():
    with pytest.raises(TypeError, match="not a preconditioner"):
        curvature.apply_preconditioner(jnp.eye(2), jnp.ones(2))


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_drift_record_tracks_x_times_drift_within_its_rounding_bound(loss):
    """The cache's running sum of ``X u_j`` (computed in float32 here, so rounding is visible) stays within
    :func:`curvature.drift_rounding` of the exact ``X (w - w_ref)``, computed in long double."""
    from certunlearn import removal

    X, y, w = _problem(loss, n=200, d=40)
    X = X.astype(np.float32)
    n = len(y)
    keep = np.ones(n, np.float32)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    w0 = f32(w * 0.1)
    cache = curvature.build_cache(w0, f32(X), jnp.asarray(y), f32(keep), 0.05, loss="logistic" if loss == "logistic"
                                  else "softmax", capacity=40 * curvature.columns_per_row(w.shape))
    params = w0
    rng = np.random.default_rng(6)
    for i in range(30):
        keep[i] = 0.0
        out = removal.cached_removal(params, f32(X), jnp.asarray(y), f32(keep), jnp.asarray([i]), f32([1.0]),
                                     f32([1.0]), f32(0.01 * rng.normal(size=w.shape)), 0.05, cache, 30.0, 1.0,
                                     loss=loss, update="guo", bound="data-dependent")
        cache = curvature.with_state(cache, out.state)
        params = out.params
    exact = np.asarray(X, np.longdouble) @ (np.asarray(params, np.longdouble) - np.asarray(w0, np.longdouble))
    err = np.abs(np.asarray(cache.drift_logits, np.longdouble) - exact)
    err = err if err.ndim == 1 else np.sqrt(np.sum(err**2, axis=1))
    bound = float(curvature.drift_rounding(cache, X.shape[1], 1.0))
    assert np.isfinite(bound) and err.max() <= bound
    assert err.max() > 0  # float32 rounding is really there, so the comparison is not vacuous
    # A step that does not track the drift makes the record unusable instead of wrong.
    forgotten = curvature.forget_drift(cache)
    assert float(curvature.drift_rounding(forgotten, X.shape[1], 1.0)) == np.inf
