"""Newton removal against float64 references, retraining, and the soundness of every residual bound."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import certunlearn as cu
from certunlearn import removal

import reference as ref


def _data(loss, n=60, d=6, k=3, seed=0, leverage=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:leverage] = 0.0
    X[:leverage, 0] = 1.0  # identical high-leverage rows along one axis
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    X *= rng.uniform(0.3, 1.0, size=(n, 1))
    X[:leverage] /= np.linalg.norm(X[:leverage], axis=1, keepdims=True)
    teacher = rng.normal(size=(d, k))
    if loss == "logistic":
        y = np.where(X @ teacher[:, 0] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
    elif loss == "softmax":
        y = np.argmax(X @ teacher + 0.3 * rng.normal(size=(n, k)), axis=1).astype(np.int32)
    else:
        y = X @ teacher[:, 0] + 0.1 * rng.normal(size=n)
    return X, y


def _np(a):
    return np.asarray(a, dtype=np.float64)


def test_ridge_removal_equals_exact_retraining():
    X, y = _data("squared", n=80, d=7)
    model = cu.fit(X, y, loss="squared", l2_reg=1e-2, sigma=0.5, solver="cholesky", key=jax.random.key(3))
    np.testing.assert_allclose(model.params, ref.ridge_solution(X, y, np.ones(80), _np(model.perturbation), 1e-2), rtol=1e-10)
    for batch in ([5], [0, 9, 31], list(range(40, 52))):
        model, report = cu.remove(model, batch)
        assert not report.retrained
        expected = ref.ridge_solution(X, y, model.retained.astype(float), _np(model.perturbation), 1e-2)
        rel = np.linalg.norm(_np(model.params) - expected) / np.linalg.norm(expected)
        assert rel < 1e-9
        assert report.remainder == 0.0  # gamma = 0: the Newton step is exact
    assert model.exact_residual() < 1e-9


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
@pytest.mark.parametrize("solver", ["cholesky", "cached", "cg"])
def test_removal_matches_numpy_newton_update_and_is_close_to_retraining(loss, solver):
    X, y = _data(loss, n=70, d=5)
    lam = 0.05
    model = cu.fit(X, y, loss=loss, l2_reg=lam, sigma=0.2, residual_budget=None, solver=solver, key=jax.random.key(1))
    w0, b = _np(model.params), _np(model.perturbation)
    # The trained model is the minimiser of L_b (independent Newton in NumPy).
    w_star = ref.train(X, y, np.ones(70), b, lam, loss, w0.shape)
    np.testing.assert_allclose(w0, w_star, atol=1e-9)
    idx = np.array([3, 11, 12])
    new_model, report = cu.remove(model, idx)
    assert not report.retrained and report.converged
    removed = np.zeros(70, bool)
    removed[idx] = True
    expected = ref.guo_removal(w0, X, y, (~removed).astype(float), removed, lam, loss)
    np.testing.assert_allclose(_np(new_model.params), expected, rtol=1e-8, atol=1e-10)
    retrained = ref.train(X, y, (~removed).astype(float), b, lam, loss, w0.shape)
    # Newton's step is quadratically close: far closer to retraining than the original model was.
    assert np.linalg.norm(_np(new_model.params) - retrained) < 1e-2 * np.linalg.norm(w0 - retrained)
    # The old model is untouched (immutability).
    np.testing.assert_array_equal(_np(model.params), w0)
    assert model.retained.all() and model.ledger.removals == 0


@settings(max_examples=12)
@given(
    loss=st.sampled_from(["logistic", "softmax"]),
    n=st.sampled_from([16, 48]),
    d=st.sampled_from([1, 5]),
    log_lam=st.floats(-4, 0),
    batch=st.integers(1, 5),
    leverage=st.integers(0, 4),
    update=st.sampled_from(["guo", "gradient"]),
    seed=st.integers(0, 1000),
)
def test_bounds_dominate_the_exact_residual(loss, n, d, log_lam, batch, leverage, update, seed):
    """Worst-case >= data-dependent >= what they bound, for every bound, including high-leverage rows."""
    X, y = _data(loss, n=n, d=d, seed=seed, leverage=min(leverage, n - batch - 2))
    lam = 10.0**log_lam
    models = {
        bound: cu.fit(X, y, loss=loss, l2_reg=lam, sigma=1.0, bound=bound, update=update,
                      on_exhausted="raise", residual_budget=None, key=jax.random.key(seed))
        for bound in ("worst-case", "data-dependent")
    }
    idx = np.arange(batch)  # includes the high-leverage rows first
    for bound, model in models.items():
        try:
            new, report = cu.remove(model, idx)
        except cu.BudgetExhaustedError:
            # Too large for the budget; the bound itself is still checked through removal.residual_terms.
            continue
        exact = new.exact_residual()
        assert new.ledger.residual_spent >= exact * (1 - 1e-9) - 1e-12
        assert report.residual_bound >= 0
    # Compare bounds on the identical step directly.
    m = models["data-dependent"]
    keep = np.ones(n, bool); keep[idx] = False
    rows, ones = jnp.asarray(idx), jnp.ones(batch)
    step = removal.newton_step(m.params, m._data.X, m._data.y, jnp.asarray(keep, float), rows, ones,
                               m.perturbation, lam, loss=loss, solver="cholesky", update=update)
    terms = {
        bound: removal.residual_terms(m.params, step.params, m._data.X64, m._data.y64, jnp.asarray(keep, float),
                                      rows, ones, m.perturbation, lam, m._data.data_norm,
                                      m._data.max_row_norm, loss=loss, update=update, bound=bound)
        for bound in removal.BOUNDS
    }
    exact = float(terms["exact"].exact_residual)
    prior = m.ledger.residual_spent if update == "guo" else 0.0
    dd = prior + float(terms["data-dependent"].solve_error + terms["data-dependent"].remainder)
    wc = prior + float(terms["worst-case"].solve_error + terms["worst-case"].remainder)
    assert exact <= dd * (1 + 1e-9) + 1e-12
    assert float(terms["data-dependent"].remainder) <= float(terms["worst-case"].remainder) * (1 + 1e-9) + 1e-15


@pytest.mark.parametrize(
    "loss,update,solver,bound",
    [
        ("logistic", "guo", "cholesky", "data-dependent"),
        ("logistic", "gradient", "cholesky", "data-dependent"),
        ("logistic", "guo", "cached", "data-dependent"),
        ("logistic", "guo", "cached", "worst-case"),
        ("logistic", "gradient", "cached", "data-dependent"),
        ("softmax", "guo", "cached", "data-dependent"),
        ("softmax", "guo", "cg", "worst-case"),
    ],
)
def test_spent_residual_dominates_exact_residual_over_a_long_sequence(loss, update, solver, bound):
    """Over 40 removals (singles and batches, with cache drift and refreshes) beta >= ||r|| always."""
    X, y = _data(loss, n=120, d=6, seed=4)
    model = cu.fit(X, y, loss=loss, l2_reg=1e-2, sigma=50.0, bound=bound, update=update, solver=solver,
                   cache_rows=16, key=jax.random.key(0))
    order = np.random.default_rng(0).permutation(120)[:40]
    chunks = np.split(order, [10, 12, 15, 20, 21, 30])
    for chunk in [c for part in chunks for c in (part if len(part) != 2 and len(part) != 3 else [part])]:
        model, report = cu.remove(model, chunk)
        assert model.ledger.residual_spent >= model.exact_residual() * (1 - 1e-9)
        assert report.residual_spent <= report.residual_budget
    assert model.n_retained == 80


@pytest.mark.parametrize("refresh_ratio,tolerance", [(20.0, 0.05), (math.inf, 0.1)])
def test_cached_path_tracks_exact_newton_and_retraining(refresh_ratio, tolerance):
    """The stale-curvature step stays close to the exact Newton step (closer with refreshes on drift), and
    its bound covers the gap."""
    X, y = _data("logistic", n=150, d=8, seed=5)
    kw = dict(l2_reg=1e-2, sigma=10.0, key=jax.random.key(0))
    exact = cu.fit(X, y, solver="cholesky", **kw)
    cached = cu.fit(X, y, solver="cached", cache_refresh_ratio=refresh_ratio, **kw)
    for i in range(15):
        exact, _ = cu.remove(exact, i)
        cached, report = cu.remove(cached, i)
    b = np.asarray(cached.perturbation, float)
    retrained = ref.train(X, y, cached.retained.astype(float), b, 1e-2, "logistic", (8,))
    w0 = ref.train(X, y, np.ones(150), b, 1e-2, "logistic", (8,))
    assert np.linalg.norm(_np(cached.params) - retrained) < tolerance * np.linalg.norm(w0 - retrained)
    assert np.linalg.norm(_np(cached.params) - _np(exact.params)) < tolerance * np.linalg.norm(w0 - retrained)
    assert cached.ledger.residual_spent >= cached.exact_residual()


def test_spectral_norm_upper_bound_is_an_upper_bound_and_tight():
    rng = np.random.default_rng(0)
    for shape in [(50, 5), (5, 50), (300, 40)]:
        X = rng.normal(size=shape)
        true = ref.spectral_norm(X)
        ub = removal.spectral_norm_upper_bound(X)
        assert true <= ub <= true * (1 + 1e-8)
