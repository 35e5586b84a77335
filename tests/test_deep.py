"""Deep certified unlearning (certunlearn.deep) against independent float64 NumPy references.

The reference network is a one-hidden-layer tanh MLP written twice: in JAX (the ``apply`` under test)
and in NumPy with a hand-written backward pass (``_np_gradient``); its Hessian is the central
difference of that NumPy gradient. Tolerances are stated at each assertion.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import certunlearn  # noqa: F401  (enables float64)
from certunlearn import deep, removal
from certunlearn.api import CertificationError

D, HIDDEN, K = 3, 3, 3
KEYS = ("W1", "W2", "b1", "b2")  # ravel_pytree order of a dict: sorted keys


def mlp_apply(params, X):
    return jnp.tanh(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


def linear_apply(params, X):
    return X @ params


def _init(seed, scale=0.8):
    rng = np.random.default_rng(seed)
    return {"W1": scale * rng.normal(size=(D, HIDDEN)), "W2": scale * rng.normal(size=(HIDDEN, K)),
            "b1": 0.1 * rng.normal(size=HIDDEN), "b2": 0.1 * rng.normal(size=K)}


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1.0)
    teacher = rng.normal(size=(D, K))
    y = np.argmax(X @ teacher + 0.5 * rng.normal(size=(n, K)), axis=1).astype(np.int32)
    return X, y


# ---------------------------------------------------------------------------------- NumPy reference


def _np_flat(params):
    return np.concatenate([np.asarray(params[k], np.float64).ravel() for k in KEYS])


def _np_unflat(theta):
    shapes = {"W1": (D, HIDDEN), "W2": (HIDDEN, K), "b1": (HIDDEN,), "b2": (K,)}
    out, i = {}, 0
    for k in KEYS:
        size = int(np.prod(shapes[k]))
        out[k] = theta[i:i + size].reshape(shapes[k])
        i += size
    return out


def _np_objective(theta, X, y, weights, l2_reg):
    p = _np_unflat(theta)
    z = np.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    losses = scipy.special.logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    return float(np.sum(weights * losses) + 0.5 * l2_reg * weights.sum() * theta @ theta)


def _np_gradient(theta, X, y, weights, l2_reg):
    p = _np_unflat(theta)
    hidden = np.tanh(X @ p["W1"] + p["b1"])
    z = hidden @ p["W2"] + p["b2"]
    dz = scipy.special.softmax(z, axis=1)
    dz[np.arange(len(y)), y] -= 1.0
    dz *= weights[:, None]
    da = (dz @ p["W2"].T) * (1.0 - hidden ** 2)
    grads = {"W1": X.T @ da, "W2": hidden.T @ dz, "b1": da.sum(0), "b2": dz.sum(0)}
    return _np_flat(grads) + l2_reg * weights.sum() * theta


def _np_hessian(theta, X, y, weights, l2_reg, eps=1e-5):
    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = eps
        cols.append((_np_gradient(theta + e, X, y, weights, l2_reg) - _np_gradient(theta - e, X, y, weights, l2_reg))
                    / (2 * eps))
    H = np.array(cols).T
    return 0.5 * (H + H.T)


def _np_train(theta, X, y, weights, l2_reg, steps=60):
    """Damped Newton in NumPy to a stationary point (the 'warm retrain' reference)."""
    for _ in range(steps):
        g = _np_gradient(theta, X, y, weights, l2_reg)
        if np.linalg.norm(g) < 1e-11:
            break
        H = _np_hessian(theta, X, y, weights, l2_reg)
        theta = theta - np.linalg.solve(H, g)
    return theta


L2, N = 0.2, 40  # an active hidden layer (||W1|| ~ 0.9 for seed 3) that is locally convex after training


def _trained(seed=3, n=N, l2_reg=L2):
    X, y = _data(n, seed)
    params = deep.train(mlp_apply, _init(seed), X, y, l2_reg=l2_reg, optimizer="lbfgs", steps=500, tol=1e-10).params
    return X, y, params


# ---------------------------------------------------------------------------------- objective, HVP


def test_objective_and_gradient_match_numpy():
    X, y = _data()
    params = _init(1)
    weights = np.ones(len(y))
    weights[[2, 5]] = 0.0
    theta = _np_flat(params)
    value = deep.objective(mlp_apply, params, X, y, weights, l2_reg=0.2)
    assert abs(float(value) - _np_objective(theta, X, y, weights, 0.2)) < 1e-12  # float64 rounding
    grad = ravel_pytree(deep.gradient(mlp_apply, params, X, y, weights, l2_reg=0.2))[0]
    np.testing.assert_allclose(grad, _np_gradient(theta, X, y, weights, 0.2), rtol=1e-12, atol=1e-12)


def test_hvp_equals_dense_hessian_times_vector():
    X, y = _data()
    params = _init(2)
    weights = (np.arange(len(y)) % 3 != 0).astype(float)
    flat, unravel = ravel_pytree(params)
    # Reference 1: jax.hessian of the flattened objective. Reference 2: NumPy central differences.
    f = lambda t: deep.objective(mlp_apply, unravel(t), X, y, weights, l2_reg=0.1)
    H_jax = np.asarray(jax.hessian(f)(flat))
    H_np = _np_hessian(_np_flat(params), X, y, weights, 0.1)
    np.testing.assert_allclose(H_jax, H_np, atol=1e-7)  # finite-difference error ~1e-10
    v = np.random.default_rng(0).normal(size=flat.size)
    hv = ravel_pytree(deep.hvp(mlp_apply, params, X, y, weights, unravel(jnp.asarray(v)), l2_reg=0.1))[0]
    np.testing.assert_allclose(hv, H_jax @ v, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(deep.dense_hessian(mlp_apply, params, X, y, weights, l2_reg=0.1), H_jax, atol=1e-10)


def test_hvp_under_jit_in_float32_and_float64():
    X, y = _data()
    params = _init(3)
    v = jax.tree_util.tree_map(jnp.ones_like, params)
    out = {}
    for dtype in (jnp.float32, jnp.float64):
        cast = lambda t, dtype=dtype: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), t)
        fn = jax.jit(lambda p, vec, dtype=dtype: deep.hvp(mlp_apply, p, jnp.asarray(X, dtype), y,
                                                          jnp.ones(len(y), dtype), vec, l2_reg=0.1),
                     static_argnames="dtype")
        out[dtype] = ravel_pytree(fn(cast(params), cast(v)))[0]
        assert out[dtype].dtype == dtype
    np.testing.assert_allclose(out[jnp.float32], out[jnp.float64], rtol=1e-4, atol=1e-4)  # float32 rounding


# ---------------------------------------------------------------------------------- solvers


def _system(seed=4, damping=0.5):
    X, y = _data(seed=seed)
    params = _init(seed)
    weights = np.ones(len(y))
    weights[0] = 0.0
    theta = _np_flat(params)
    H = _np_hessian(theta, X, y, weights, 0.2) + damping * weights.sum() * np.eye(theta.size)
    g = _np_gradient(theta, X, y, weights, 0.2)
    return X, y, params, weights, H, g


@pytest.mark.parametrize("solver", ["cg", "dense", "lissa"])
def test_inverse_hvp_solvers_match_numpy_solve(solver):
    damping = 0.5
    X, y, params, weights, H, g = _system(damping=damping)
    assert np.linalg.eigvalsh(H)[0] > 0  # the damped system is positive definite here
    expected = np.linalg.solve(H, g)
    kwargs = {"lissa_depth": 3000} if solver == "lissa" else {}
    new, result = deep.newton_step(mlp_apply, params, X, y, weights, l2_reg=0.2, damping=damping, solver=solver,
                                   rtol=1e-10, **kwargs)
    assert bool(result.converged)
    step = _np_flat(params) - _np_flat(new)
    # CG / Cholesky: to solver precision; LiSSA (deterministic Neumann series, 3000 terms): to its rtol.
    np.testing.assert_allclose(step, expected, rtol=1e-7, atol=1e-8)


def test_stochastic_lissa_approaches_the_solution():
    damping = 0.5
    X, y, params, weights, H, g = _system(damping=damping)
    expected = np.linalg.solve(H, g)
    errors = []
    for repeats in (1, 8):
        new, _ = deep.newton_step(mlp_apply, params, X, y, weights, l2_reg=0.2, damping=damping, solver="lissa",
                                  lissa_depth=200, lissa_repeats=repeats, lissa_batch_size=8, rtol=1.0,
                                  key=jax.random.key(5))
        step = _np_flat(params) - _np_flat(new)
        errors.append(np.linalg.norm(step - expected) / np.linalg.norm(expected))
    # Minibatch noise: within 50% for one run; averaging 8 runs shrinks the error.
    assert errors[0] < 0.5 and errors[1] < errors[0]


def test_lissa_and_lanczos_on_explicit_matrices():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    eig = np.array([-2.0, -0.5, 0.3, 1.0, 1.5, 2.0, 4.0, 7.0])
    A = Q @ np.diag(eig) @ Q.T
    ritz_of = jax.jit(lambda M, steps: deep.lanczos(lambda v: M @ v, jnp.ones(8), steps=steps), static_argnums=1)
    ritz = np.asarray(ritz_of(jnp.asarray(A), 8))
    np.testing.assert_allclose(ritz, eig, atol=1e-10)  # full Krylov space: exact
    ritz4 = np.asarray(ritz_of(jnp.asarray(A), 4))
    assert ritz4[0] >= eig[0] - 1e-12 and ritz4[-1] <= eig[-1] + 1e-12  # interlacing: from the inside
    spd = Q @ np.diag(np.abs(eig) + 0.5) @ Q.T
    b = rng.normal(size=8)
    solve = jax.jit(lambda M, rhs: deep.lissa(lambda v: M @ v, rhs, scale=8.0, depth=400, rtol=1e-10))
    r = solve(jnp.asarray(spd), jnp.asarray(b))
    np.testing.assert_allclose(r.x, np.linalg.solve(spd, b), rtol=1e-9)
    # An indefinite operator makes the Neumann series diverge: reported, never converged.
    bad = solve(jnp.asarray(A), jnp.asarray(b))
    assert not bool(bad.converged)


def test_extreme_eigenvalues_dense_and_lanczos_agree_with_numpy():
    X, y = _data()
    params = _init(6)
    H = _np_hessian(_np_flat(params), X, y, np.ones(len(y)), 0.1)
    ref = np.linalg.eigvalsh(H)
    dense = deep.extreme_eigenvalues(mlp_apply, params, X, y, l2_reg=0.1, method="dense")
    assert dense.exact and abs(dense.minimum - ref[0]) < 1e-7 and abs(dense.maximum - ref[-1]) < 1e-7
    lz = deep.extreme_eigenvalues(mlp_apply, params, X, y, l2_reg=0.1, method="lanczos", steps=H.shape[0],
                                  key=jax.random.key(0))
    assert not lz.exact and abs(lz.minimum - ref[0]) < 1e-6 and abs(lz.maximum - ref[-1]) < 1e-6


# ---------------------------------------------------------------------------------- the Newton step


def test_newton_step_equals_numpy_reference_step():
    X, y, params = _trained()
    weights = np.ones(len(y))
    weights[[1, 7]] = 0.0
    theta = _np_flat(params)
    damping = 0.01
    H = _np_hessian(theta, X, y, weights, L2) + damping * weights.sum() * np.eye(theta.size)
    expected = theta - np.linalg.solve(H, _np_gradient(theta, X, y, weights, L2))
    for solver in ("cg", "dense"):
        new, _ = deep.newton_step(mlp_apply, params, X, y, weights, l2_reg=L2, damping=damping, solver=solver)
        np.testing.assert_allclose(_np_flat(new), expected, rtol=1e-7, atol=1e-8)  # reference Hessian ~1e-9


@pytest.mark.parametrize("update", ["gradient", "guo"])
def test_linear_network_reproduces_the_convex_newton_step(update):
    rng = np.random.default_rng(3)
    n, d, k = 30, 4, 3
    X = rng.normal(size=(n, d))
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1.0)
    y = rng.integers(0, k, size=n).astype(np.int32)
    lam = 0.1
    # The exact minimiser on all rows (so Guo's update and the gradient form coincide).
    w = deep.train(linear_apply, jnp.zeros((d, k)), X, y, l2_reg=lam, optimizer="lbfgs", steps=500, tol=1e-12).params
    removed = np.array([4, 11])
    keep = np.ones(n)
    keep[removed] = 0.0
    ours, _ = deep.newton_step(linear_apply, w, X, y, keep, l2_reg=lam, damping=0.0, solver="dense")
    convex = removal.newton_step(jnp.asarray(w), jnp.asarray(X), jnp.asarray(y), jnp.asarray(keep),
                                 jnp.asarray(removed), jnp.ones(2), jnp.zeros((d, k)), lam, loss="softmax",
                                 solver="cholesky", update=update)
    np.testing.assert_allclose(ours, convex.params, rtol=1e-9, atol=1e-10)


def test_unlearn_distance_bound_covers_the_retrained_model():
    X, y, params = _trained()
    forget = [1]
    result = deep.unlearn(mlp_apply, params, X, y, forget, l2_reg=L2, damping=0.0, epsilon=1.0, delta=1e-5,
                          key=jax.random.key(0))
    cert = result.certificate
    assert cert.certified and cert.conditional
    keep = np.ones(len(y))
    keep[forget] = 0.0
    w_star = _np_train(_np_flat(params), X, y, keep, L2)  # warm-started retrain (NumPy Newton)
    distance = np.linalg.norm(_np_flat(result.step_params) - w_star)
    assert distance <= cert.distance_bound
    assert distance < np.linalg.norm(_np_flat(params) - w_star)  # the step moves towards the retrain
    # The exact gradient residual, recomputed in NumPy.
    rho = np.linalg.norm(_np_gradient(_np_flat(result.step_params), X, y, keep, L2))
    assert abs(cert.gradient_residual - rho) <= 1e-12 + 1e-9 * rho
    # sigma calibrated on Delta with the exact Gaussian mechanism.
    assert math.isclose(cert.sigma, deep.calib.sigma_for_budget(cert.distance_bound, epsilon=1.0, delta=1e-5,
                                                                calibration="analytic"), rel_tol=1e-12)
    text = str(cert)
    assert "CONDITIONAL" in text and "NOT PROVEN" in text and "assumptions" in text and "retrain" in text


@settings(max_examples=3, deadline=None, derandomize=True)
@given(seed=st.integers(0, 50), num=st.integers(1, 2), damping=st.sampled_from([0.0, 0.01]))
def test_property_certified_bound_is_at_least_the_distance_to_retraining(seed, num, damping):
    X, y, params = _trained(seed=seed % 4)
    forget = np.random.default_rng(seed).choice(len(y), size=num, replace=False)
    result = deep.unlearn(mlp_apply, params, X, y, forget, l2_reg=L2, damping=damping, epsilon=1.0, delta=1e-5,
                          key=jax.random.key(seed), on_failure="report")
    keep = np.ones(len(y))
    keep[forget] = 0.0
    w_star = _np_train(_np_flat(params), X, y, keep, L2)
    distance = np.linalg.norm(_np_flat(result.step_params) - w_star)
    if result.certificate.certified:
        assert distance <= result.certificate.distance_bound
    else:
        assert result.certificate.epsilon == math.inf and result.certificate.sigma == 0.0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(rho=st.floats(0, 10), m=st.floats(-1, 10), big_m=st.floats(0, 10))
def test_property_local_bound_satisfies_its_own_conditions(rho, m, big_m):
    bound, radius = deep.local_distance_bound(rho, m, big_m)
    if math.isfinite(bound):
        # (m - M d / 2) d <= rho holds at d = Delta with equality, and Delta lies inside the ball m / M.
        assert (m - big_m * bound / 2) * bound == pytest.approx(rho, rel=1e-9, abs=1e-12)
        assert bound < radius and bound >= rho / m - 1e-12
    else:
        assert m <= 0 or m * m <= 2 * big_m * rho


def test_local_bound_on_a_one_dimensional_cubic():
    # F(x) = a x^2 / 2 + M x^3 / 6 around x0 = 0 shifted: F'(x) = a x + M x^2 / 2, F'' Lipschitz with M.
    # At x0 = c: rho = |a c + M c^2 / 2|, m = a + M c; the stationary point near x0 is x* = 0.
    a, big_m = 2.0, 3.0
    for c in (0.05, 0.2, -0.1, 0.3):
        rho, m = abs(a * c + big_m * c * c / 2), a + big_m * c
        bound, _ = deep.local_distance_bound(rho, m, big_m)
        assert abs(c) <= bound * (1 + 1e-12)
        assert bound <= 1.5 * abs(c)  # and it is not loose here


def test_local_bound_on_an_exact_quadratic():
    # F(w) = 0.5 w^T A w - c^T w: rho / lambda_min bounds ||w - A^{-1} c|| (M = 0), tight along the
    # smallest eigenvector.
    A = np.diag([0.5, 2.0])
    w = np.array([1.0, 0.0])
    rho = np.linalg.norm(A @ w - 0.0)
    bound, _ = deep.local_distance_bound(rho, 0.5, 0.0)
    assert bound == pytest.approx(np.linalg.norm(w))


def test_worst_case_bound_formula_and_refusal_without_radius():
    value = deep.worst_case_distance_bound(norm_radius=2.0, hessian_lipschitz=0.5, damping_shift=1.0,
                                           min_eigenvalue=3.0, solve_error=0.4, unlearned_norm=100.0)
    assert value == pytest.approx((2 * 2.0 * (0.5 * 2.0 + 1.0) + 0.4) / 4.0)
    assert deep.worst_case_distance_bound(norm_radius=2.0, hessian_lipschitz=0.5, damping_shift=1.0,
                                          min_eigenvalue=3.0, solve_error=0.4, unlearned_norm=0.05) == 2.05  # trivial
    assert deep.worst_case_distance_bound(norm_radius=2.0, hessian_lipschitz=0.5, damping_shift=1.0,
                                          min_eigenvalue=-1.0, solve_error=0.0, unlearned_norm=0.5) == math.inf
    X, y, params = _trained()
    with pytest.raises(ValueError, match="norm_radius"):
        deep.unlearn(mlp_apply, params, X, y, [0], l2_reg=L2, damping=0.0, epsilon=1.0, delta=1e-5,
                     bound="worst-case", key=jax.random.key(0))
    norm = float(np.linalg.norm(_np_flat(params)))
    ok = deep.unlearn(mlp_apply, params, X, y, [0], l2_reg=L2, damping=0.01, epsilon=1.0, delta=1e-5,
                      bound="worst-case", norm_radius=norm * 1.01, key=jax.random.key(0))
    assert ok.certificate.certified and ok.certificate.distance_bound >= norm  # never much below 2C
    low = deep.unlearn(mlp_apply, params, X, y, [0], l2_reg=L2, damping=0.01, epsilon=1.0, delta=1e-5,
                       bound="worst-case", norm_radius=norm * 0.5, key=jax.random.key(0), on_failure="report")
    assert not low.certificate.certified and "exceeds norm_radius" in low.certificate.reasons[0]


# ---------------------------------------------------------------------------------- refusals, noise, inputs


def test_certificate_refuses_when_cg_hits_maxiter():
    X, y, params = _trained()
    kwargs = {"l2_reg": L2, "damping": 0.0, "epsilon": 1.0, "delta": 1e-5, "key": jax.random.key(0), "maxiter": 1}
    with pytest.raises(CertificationError, match="did not converge"):
        deep.unlearn(mlp_apply, params, X, y, [2, 5], **kwargs)
    report = deep.unlearn(mlp_apply, params, X, y, [2, 5], on_failure="report", **kwargs)
    cert = report.certificate
    assert not cert.certified and not cert.solver_converged and cert.solver_steps == 1
    assert cert.epsilon == math.inf and cert.sigma == 0.0
    assert str(cert).startswith("NOT CERTIFIED")
    np.testing.assert_array_equal(_np_flat(report.params), _np_flat(report.step_params))  # no noise, no claim


def test_certificate_refuses_without_local_convexity():
    X, y = _data(seed=7)
    params = _init(7, scale=3.0)  # an untrained, saturated tanh net without regularisation: indefinite
    H = _np_hessian(_np_flat(params), X, y, np.ones(len(y)), 0.0)
    assert np.linalg.eigvalsh(H)[0] < 0
    with pytest.raises(CertificationError, match="local convexity"):
        deep.unlearn(mlp_apply, params, X, y, [0], l2_reg=0.0, damping=0.0, epsilon=1.0, delta=1e-5,
                     solver="dense", key=jax.random.key(0))


def test_noise_scales_with_sigma_and_epsilon_follows():
    X, y, params = _trained()
    kw = {"l2_reg": L2, "damping": 0.0, "epsilon": 1.0, "delta": 1e-5, "key": jax.random.key(9)}
    one = deep.unlearn(mlp_apply, params, X, y, [1], sigma=1.0, **kw)
    two = deep.unlearn(mlp_apply, params, X, y, [1], sigma=2.0, **kw)
    step = _np_flat(one.step_params)
    np.testing.assert_allclose(_np_flat(two.params) - step, 2.0 * (_np_flat(one.params) - step), rtol=1e-10)
    expected = deep.calib.epsilon_for_residual(one.certificate.distance_bound, sigma=1.0, delta=1e-5,
                                               calibration="analytic")
    assert one.certificate.epsilon == expected and two.certificate.epsilon < one.certificate.epsilon


def test_inputs_are_left_unchanged_and_removals_do_not_recompile():
    X, y, params = _trained()
    snapshot = {k: np.array(v) for k, v in params.items()}
    X0, y0 = X.copy(), y.copy()
    retained = np.ones(len(y), dtype=bool)
    retained[0] = False
    kw = {"l2_reg": L2, "damping": 0.0, "epsilon": 1.0, "delta": 1e-5, "key": jax.random.key(0), "on_failure": "report"}
    first = deep.unlearn(mlp_apply, params, X, y, [1], retained=retained, **kw)
    cache = deep._newton_solve._cache_size()
    second = deep.unlearn(mlp_apply, first.step_params, X, y, [4, 6], retained=first.retained, **kw)
    assert deep._newton_solve._cache_size() == cache  # a new mask, same shapes: no new compilation
    assert second.certificate.num_retained == len(y) - 4
    with pytest.raises(ValueError):
        deep.unlearn(mlp_apply, params, X, y, [0], retained=retained, **kw)
    for k, value in snapshot.items():
        np.testing.assert_array_equal(np.asarray(params[k]), value)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert retained.sum() == len(y) - 1 and not retained[0]


@pytest.mark.parametrize("change, match", [
    ({"forget": [99]}, r"forget holds indices outside \[0, 40\)"),
    ({"forget": [2, 2]}, "repeated"),
    ({"forget": [[1, 2]]}, "1-d sequence"),
    ({"epsilon": -1.0}, "epsilon must be a finite number > 0"),
    ({"delta": 2.0}, "delta must be in the open interval"),
    ({"damping": -0.1}, "damping must be a finite number >= 0"),
    ({"l2_reg": float("nan")}, "l2_reg must be a finite number"),
    ({"solver": "newton"}, "solver must be one of"),
    ({"bound": "exact"}, "bound must be one of"),
    ({"curvature": "power"}, "curvature must be one of"),
    ({"key": 0}, "key must be a typed PRNG key"),
    ({"y": np.zeros(40)}, "integer labels"),
    ({"y": np.zeros(3, np.int32)}, "y must have shape"),
    ({"retained": np.ones(40)}, "retained must be a boolean mask"),
    ({"forget": list(range(40))}, "keep at least one row"),
    ({"maxiter": 0}, "maxiter must be an int >= 1"),
    ({"on_failure": "ignore"}, "on_failure must be one of"),
])
def test_validation_errors_name_the_argument(change, match):
    X, y = _data()
    kw = {"forget": [0], "l2_reg": 0.3, "damping": 0.0, "epsilon": 1.0, "delta": 1e-5, "key": jax.random.key(0), "y": y}
    kw.update(change)
    forget, labels = kw.pop("forget"), kw.pop("y")
    with pytest.raises(ValueError, match=match):
        deep.unlearn(mlp_apply, _init(0), X, labels, forget, **kw)


def test_train_projection_and_lbfgs_tolerance():
    X, y = _data()
    r = deep.train(mlp_apply, _init(0), X, y, l2_reg=0.01, optimizer="adam", steps=50, learning_rate=0.1,
                   norm_radius=1.0)
    assert np.linalg.norm(_np_flat(r.params)) <= 1.0 + 1e-12
    r = deep.train(mlp_apply, _init(0), X, y, l2_reg=0.3, optimizer="lbfgs", steps=500, tol=1e-9)
    assert float(r.gradient_norm) <= 1e-9
    np.testing.assert_allclose(float(r.gradient_norm),
                               np.linalg.norm(_np_gradient(_np_flat(r.params), X, y, np.ones(len(y)), 0.3)),
                               rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="norm_radius needs a projected"):
        deep.train(mlp_apply, _init(0), X, y, l2_reg=0.3, optimizer="lbfgs", norm_radius=1.0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        deep.train(mlp_apply, _init(0), X, y, l2_reg=0.3, optimizer="rmsprop")


# ---------------------------------------------------------------------------------- the experiment family


def test_family_sweeps_its_smoke_config_and_builds_the_figure(tmp_path):
    import importlib.util
    import pathlib

    from certunlearn import figures, runner
    from certunlearn.families import deep as family

    root = pathlib.Path(__file__).resolve().parents[1]
    config = root / "experiments" / "configs" / "deep.py"
    spec = importlib.util.spec_from_file_location("deep_config", config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.get_config("smoke").task == "certunlearn.families.deep:run_seed"
    assert module.sweep("smoke") == [{}] and len(module.sweep("full")) == 2
    # The smoke config, made smaller still so that the test stays fast.
    smaller = {"n_train": 60, "n_test": 40, "hidden": (4,), "num_removed": (1, 3), "polish_steps": 300,
               "retrain_steps": 300, "lanczos_steps": 10, "lissa_depth": 10}
    runner.sweep(str(config), smoke=True, out=tmp_path, overrides=smaller, progress=False)
    table = figures.load_results(tmp_path, family.FAMILY)
    assert set(table["method"]) == set(family.METHODS)
    assert sorted(set(table["num_removed"])) == [1, 3]
    warm = table[table["method"] == "retrain_warm"]
    assert (warm["distance_to_retrain"] == 0).all()
    # The removed rows are not in the reference retrain: its forget accuracy is a held-out accuracy.
    newton = table[table["method"] == "newton"].set_index("num_removed")
    none = table[table["method"] == "none"].set_index("num_removed")
    assert (newton["distance_to_retrain"] < none["distance_to_retrain"]).all()  # the step moves towards it
    paths = figures.make_figure("deep", tmp_path, tmp_path / "figures")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
