"""Losses, objective, Hessians and solvers against the float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from certunlearn import hessian, losses, objective, solvers

import reference as ref

LOSSES = ["logistic", "softmax", "squared"]


def _problem(loss, n=40, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if loss == "logistic":
        y = np.where(rng.normal(size=n) > 0, 1.0, -1.0)
        shape = (d,)
    elif loss == "softmax":
        y = rng.integers(0, k, size=n).astype(np.int32)
        shape = (d, k)
    else:
        y = rng.normal(size=n)
        shape = (d,)
    w = rng.normal(size=shape)
    b = rng.normal(size=shape)
    mask = (rng.random(n) > 0.25).astype(float)
    return X, y, w, b, mask


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_objective_gradient_hessian_match_reference(loss, dtype):
    X, y, w, b, mask = _problem(loss)
    lam = 0.05
    tol = 1e-10 if dtype == jnp.float64 else 2e-4
    cast = lambda a: jnp.asarray(a, dtype)
    yj = jnp.asarray(y) if loss == "softmax" else cast(y)
    args = (cast(w), cast(X), yj, cast(mask))
    f = jax.jit(lambda *a: objective.objective(*a, cast(b), loss=loss, l2_reg=lam))(*args)
    np.testing.assert_allclose(f, ref.objective(w, X, y, mask, b, lam, loss), rtol=tol)
    g = jax.jit(lambda *a: objective.gradient(*a, cast(b), loss=loss, l2_reg=lam))(*args)
    np.testing.assert_allclose(g, ref.gradient(w, X, y, mask, b, lam, loss), rtol=tol, atol=tol)
    H = jax.jit(lambda *a: hessian.dense_hessian(*a, loss=loss, l2_reg=lam))(*args)
    H_ref = ref.hessian(w, X, y, mask, lam, loss)
    np.testing.assert_allclose(H, H_ref, rtol=tol, atol=tol)
    v = np.random.default_rng(1).normal(size=w.shape)
    hv = jax.jit(lambda *a: hessian.glm_hvp(*a, cast(v), loss=loss, l2_reg=lam))(*args)
    np.testing.assert_allclose(np.ravel(hv), H_ref @ v.ravel(), rtol=tol, atol=tol)
    fun = lambda p: objective.objective(p, cast(X), yj, cast(mask), cast(b), loss=loss, l2_reg=lam)
    hv_ad = jax.jit(lambda p, v: hessian.hvp(fun, p, v))(cast(w), cast(v))
    np.testing.assert_allclose(np.ravel(hv_ad), H_ref @ v.ravel(), rtol=tol, atol=tol)


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_gamma_bounds_curvature_lipschitz_constant(loss):
    """Sampled ||A(z') - A(z)|| / ||z' - z|| never exceeds gamma, and gets close for logistic."""
    gamma = losses.get_loss(loss).gamma
    rng = np.random.default_rng(0)
    worst = 0.0
    for k in ([1] if loss == "logistic" else [2, 3, 5, 10]):
        for _ in range(400):
            z = rng.normal(size=k) * rng.choice([0.5, 2.0, 6.0])
            dz = rng.normal(size=k) * 1e-4
            if loss == "logistic":
                s0, s1 = (1 / (1 + np.exp(-z[0])), 1 / (1 + np.exp(-(z[0] + dz[0]))))
                diff = abs(s1 * (1 - s1) - s0 * (1 - s0))
            else:
                p0 = np.exp(z - z.max()); p0 /= p0.sum()
                p1 = np.exp(z + dz - (z + dz).max()); p1 /= p1.sum()
                A0 = np.diag(p0) - np.outer(p0, p0)
                A1 = np.diag(p1) - np.outer(p1, p1)
                diff = np.linalg.norm(A1 - A0, 2)
            worst = max(worst, diff / np.linalg.norm(dz))
    assert worst <= gamma * (1 + 1e-6)
    if loss == "logistic":
        assert worst >= 0.9 * gamma  # the constant is tight, not just valid


def test_logistic_gamma_is_the_exact_maximum():
    s = np.linspace(1e-6, 1 - 1e-6, 200001)
    assert np.max(np.abs(s * (1 - s) * (1 - 2 * s))) == pytest.approx(losses.logistic.gamma, rel=1e-8)


def test_get_loss_rejects_unknown():
    with pytest.raises(ValueError, match="loss"):
        losses.get_loss("hinge")


@given(n=st.sampled_from([2, 9, 30]), seed=st.integers(0, 10_000), shift=st.floats(1e-3, 10.0))
def test_solvers_match_numpy(n, seed, shift):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, n))
    A = M @ M.T + shift * np.eye(n)
    b = rng.normal(size=n)
    expected = np.linalg.solve(A, b)
    chol = jax.jit(solvers.cholesky_solve)(jnp.asarray(A), jnp.asarray(b))
    assert bool(chol.converged)
    np.testing.assert_allclose(chol.x, expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max())
    Aj = jnp.asarray(A)
    cg = jax.jit(lambda b: solvers.conjugate_gradient(lambda v: Aj @ v, b, rtol=1e-12, maxiter=50 * n))(jnp.asarray(b))
    assert bool(cg.converged)
    assert np.linalg.norm(A @ np.asarray(cg.x) - b) <= 1e-9 * np.linalg.norm(b) * np.linalg.cond(A)


def test_cg_reports_non_convergence_and_uses_preconditioner():
    rng = np.random.default_rng(0)
    d = np.logspace(0, 6, 200)
    Q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    A = jnp.asarray((Q * d) @ Q.T)
    b = jnp.asarray(rng.normal(size=200))
    capped = solvers.conjugate_gradient(lambda v: A @ v, b, rtol=1e-12, maxiter=5)
    assert not bool(capped.converged) and int(capped.steps) == 5
    exact_inverse = jnp.asarray((Q / d) @ Q.T)
    pre = solvers.conjugate_gradient(lambda v: A @ v, b, rtol=1e-10, preconditioner=lambda v: exact_inverse @ v)
    assert bool(pre.converged) and int(pre.steps) <= 3
    warm = solvers.conjugate_gradient(lambda v: A @ v, b, x0=pre.x, rtol=1e-8)
    assert int(warm.steps) <= 1


def test_cholesky_flags_indefinite_matrix():
    res = solvers.cholesky_solve(jnp.array([[1.0, 2.0], [2.0, 1.0]]), jnp.array([1.0, 1.0]))
    assert not bool(res.converged)


@pytest.mark.parametrize("loss", ["logistic", "softmax", "squared"])
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.1, 3.0, 30.0]))
def test_rounding_bounds_cover_float32_against_float64(loss, seed, scale):
    # Float32 arithmetic makes rounding visible: on float32-representable inputs, the float32 gradient
    # (and HVP) must lie within the bound of the float64 (reference: NumPy) value.
    X, y, w, _, _ = _problem(loss, n=300, d=12, seed=seed)
    rng = np.random.default_rng(seed)
    X32 = np.asarray(X, np.float32)
    w32 = np.asarray(scale * np.asarray(w), np.float32)
    b32 = np.asarray(rng.normal(size=w32.shape), np.float32)
    v32 = np.asarray(rng.normal(size=w32.shape), np.float32)
    mask = (rng.random(300) > 0.3).astype(np.float32)
    lam = 1e-2
    y32 = np.asarray(y, np.int32 if loss == "softmax" else np.float32)
    exact_g = ref.gradient(np.float64(w32), np.float64(X32), np.asarray(y32), np.float64(mask), np.float64(b32),
                           lam, loss)
    args32 = (jnp.asarray(w32), jnp.asarray(X32), jnp.asarray(y32), jnp.asarray(mask), jnp.asarray(b32))
    g32 = np.asarray(objective.gradient(*args32, loss=loss, l2_reg=lam), np.float64)
    bound = float(objective.gradient_rounding_bound(*args32, loss=loss, l2_reg=lam))
    assert np.linalg.norm(g32 - exact_g) <= bound
    norm32 = float(objective.gradient_norm(*args32, loss=loss, l2_reg=lam))
    assert abs(norm32 - np.linalg.norm(exact_g)) <= bound
    assert float(objective.gradient_norm_upper_bound(*args32, loss=loss, l2_reg=lam)) >= np.linalg.norm(exact_g)
    exact_hv = ref.hessian(np.float64(w32), np.float64(X32), np.asarray(y32), np.float64(mask), lam, loss) @ np.float64(v32).ravel()
    hv32 = np.asarray(hessian.glm_hvp(jnp.asarray(w32), jnp.asarray(X32), None, jnp.asarray(mask), jnp.asarray(v32),
                                      loss=loss, l2_reg=lam), np.float64).ravel()
    err, norm = objective.hvp_rounding_bound(jnp.asarray(w32), jnp.asarray(X32), jnp.asarray(mask), jnp.asarray(v32),
                                             loss=loss, l2_reg=lam)
    assert np.linalg.norm(hv32 - exact_hv) <= float(err)
    assert np.linalg.norm(exact_hv) <= float(norm)
    # The bound is not vacuous: a few hundred ulps of the magnitudes involved, not orders more.
    assert bound <= 1e-2 * (np.linalg.norm(exact_g) + 300 * scale + 10)


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
@pytest.mark.parametrize("method,solver,rows", [("newton", "cholesky", 0), ("newton", "cg", 0), ("newton", "cg", 16),
                                                ("lbfgs", "cholesky", 0)])
def test_training_reaches_the_numpy_minimiser(loss, method, solver, rows):
    """Every training method, with and without the projected CG preconditioner, finds the same minimiser."""
    from certunlearn import train

    X, y, _, b, mask = _problem(loss, n=60, d=6)
    shape = (6,) if loss == "logistic" else (6, 3)
    lam = 0.05
    expected = ref.train(X, y, mask, b, lam, loss, shape)
    res = train.fit_params(jnp.zeros(shape), jnp.asarray(X), jnp.asarray(y), jnp.asarray(mask), jnp.asarray(b), lam,
                           1e-10, loss=loss, method=method, solver=solver, max_steps=500, preconditioner_rows=rows)
    assert bool(res.converged) and float(res.grad_norm) <= 1e-10
    np.testing.assert_allclose(np.asarray(res.params), expected, rtol=1e-8, atol=1e-10)


def test_training_preconditions_cg_only_where_it_pays():
    from certunlearn import train

    assert train._preconditioner_pays((60000, 784), (784, 10))  # softmax Fashion-MNIST: HVPs dominate
    assert not train._preconditioner_pays((12000, 784), (784,))  # binary: an HVP is cheap, r K = d
    assert not train._preconditioner_pays((200, 20), (20, 3))  # tiny: compiling would dominate
    assert not train._preconditioner_pays((60000, 5000), (5000, 10))  # too many features to eigendecompose
