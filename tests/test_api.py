"""The public API: budget and retraining, certificates, immutability, bad input, compilation."""

import copy

import jax
import numpy as np
import pytest

import certunlearn as cu
from certunlearn import calibration, curvature, removal, train


def _binary(n=150, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(X @ rng.normal(size=d) + 0.2 * rng.normal(size=n) > 0, 1.0, -1.0)
    return X, y


def test_public_api_contract():
    X, y = _binary()
    model = cu.fit(X, y, loss="logistic", l2_reg=1e-3, epsilon=1.0, delta=1e-4, sigma=None,
                   residual_budget=None, calibration="analytic", bound="data-dependent",
                   key=jax.random.key(0), dtype="float64")
    assert model.params.shape == (8,) and model.perturbation.shape == (8,)
    assert model.retained.shape == (150,) and model.retained.all()
    new_model, report = cu.remove(model, 7)
    assert isinstance(report.residual_bound, float) and isinstance(report.retrained, bool)
    cert = new_model.certificate()
    for field in ("epsilon", "delta", "sigma", "calibration", "bound", "residual_spent", "residual_budget",
                  "removals", "retrains"):
        assert hasattr(cert, field)
    assert cert.removals == 1 and not new_model.retained[7]
    assert new_model.predict(X).shape == (150,)
    assert new_model.exact_residual() <= cert.residual_spent
    assert "certified" in str(cert)


@pytest.mark.parametrize("calib", ["guo", "analytic"])
def test_certificate_epsilon_consistent_with_sigma_and_spent_residual(calib):
    X, y = _binary()
    model = cu.fit(X, y, l2_reg=1e-2, epsilon=0.5, delta=1e-5, sigma=2.0, calibration=calib, key=jax.random.key(1))
    model, _ = cu.remove(model, [1, 2, 3])
    cert = model.certificate()
    assert cert.sigma == 2.0
    # Independent: the Guo constant, or the Balle-Wang delta at the certified epsilon equals delta.
    if calib == "guo":
        c = np.sqrt(2 * np.log(1.5 / 1e-5))
        assert cert.epsilon == pytest.approx(c * cert.residual_spent / 2.0, rel=1e-9)
        assert cert.residual_budget == pytest.approx(2.0 * 0.5 / c, rel=1e-9)
    else:
        from scipy.stats import norm
        beta, s, e = cert.residual_spent, 2.0, cert.epsilon
        true_delta = norm.cdf(beta / (2 * s) - e * s / beta) - np.exp(e) * norm.cdf(-beta / (2 * s) - e * s / beta)
        assert true_delta <= 1e-5 * (1 + 1e-4)
    assert cert.epsilon <= 0.5


@pytest.mark.parametrize("bound", ["worst-case", "data-dependent", "exact"])
def test_retrain_happens_exactly_when_the_next_removal_would_overflow(bound):
    X, y = _binary(n=120, d=5, seed=2)
    model = cu.fit(X, y, l2_reg=1e-2, epsilon=1.0, delta=1e-4, residual_budget={"worst-case": 0.5, "data-dependent": 0.05, "exact": 0.005}[bound],
                   bound=bound, key=jax.random.key(2))
    retrains = 0
    for i in range(40):
        before = model
        model, report = cu.remove(model, i)
        if report.retrained:
            retrains += 1
            # The certified step would have overflowed: recompute it independently of the decision.
            would = (before.ledger.residual_spent if (bound != "exact") else 0.0) + (
                report.exact_residual if bound == "exact" else report.solve_error + report.remainder)
            assert would > before.calibration.residual_budget or not report.converged
            # Fresh noise, new training residual, and the ledger restarts from it.
            assert not np.allclose(model.perturbation, before.perturbation)
            assert model.ledger.residual_spent == pytest.approx(model.training_residual)
            assert model.ledger.retrains == before.ledger.retrains + 1
        else:
            assert model.ledger.residual_spent <= model.calibration.residual_budget
            assert model.ledger.residual_spent >= before.ledger.residual_spent or bound == "exact"
        assert model.certificate().epsilon <= 1.0 + 1e-9
        assert model.ledger.residual_spent >= model.exact_residual() * (1 - 1e-9)
    assert retrains >= 1, "budget chosen to force at least one retrain"
    assert model.certificate().removals == 40 and model.n_retained == 80


def test_on_exhausted_raise_leaves_model_unchanged():
    X, y = _binary(n=100, d=5, seed=3)
    model = cu.fit(X, y, l2_reg=1e-2, residual_budget=1e-3, on_exhausted="raise", key=jax.random.key(0))
    snapshot = (np.asarray(model.params).copy(), model.retained.copy(), model.ledger)
    with pytest.raises(cu.BudgetExhaustedError, match="budget"):
        for i in range(100):
            model, _ = cu.remove(model, i)
    np.testing.assert_array_equal(np.asarray(model.params), np.asarray(model.params))
    assert model.ledger.residual_spent <= model.calibration.residual_budget
    del snapshot


def test_noise_and_training_are_reproducible_from_the_key():
    X, y = _binary()
    a = cu.fit(X, y, key=jax.random.key(5))
    b = cu.fit(X, y, key=jax.random.key(5))
    c = cu.fit(X, y, key=jax.random.key(6))
    np.testing.assert_array_equal(np.asarray(a.params), np.asarray(b.params))
    assert not np.allclose(a.perturbation, c.perturbation)
    # The noise has the calibrated standard deviation.
    big = cu.fit(np.tile(X[:, :1], (1, 1)) / 1.0, y, sigma=3.0, key=jax.random.key(0))
    assert big.calibration.sigma == 3.0


def test_sigma_zero_certifies_nothing_and_zero_removals_cost_nothing():
    X, y = _binary()
    model = cu.fit(X, y, l2_reg=1e-2, residual_budget=0.1, key=jax.random.key(0))
    same, report = cu.remove(model, [])
    assert same is model and report.residual_bound == 0.0 and not report.retrained
    assert calibration.epsilon_for_residual(1e-3, sigma=0.0, delta=1e-4, calibration="analytic") == np.inf


@pytest.mark.parametrize("solver", ["cholesky", "cached", "cg"])
def test_sequence_of_removals_compiles_once(solver):
    X, y = _binary(n=100, d=6, seed=9)
    model = cu.fit(X, y, l2_reg=1e-2, sigma=100.0, solver=solver, cache_rows=8, key=jax.random.key(0))
    # Warm-up: one single and one batch removal compile the step (per batch-size bucket) and its certificate.
    model, _ = cu.remove(model, 0)
    model, _ = cu.remove(model, [1, 41])
    jitted = (removal.newton_step, removal.cached_newton_step, removal.cached_removal, removal.residual_terms,
              train.fit_params, curvature.build_cache, curvature.downdate, curvature.projected_preconditioner)
    sizes = [f._cache_size() for f in jitted]
    retrained = 0
    for i in range(2, 22):  # single and batch removals, cache refreshes, and the retrains the budget forces
        model, report = cu.remove(model, [i] if i % 2 else [i, i + 40])
        retrained += report.retrained
    assert 0 < retrained < 20
    assert [f._cache_size() for f in jitted] == sizes


@pytest.mark.parametrize("solver", ["cholesky", "cached", "cg"])
def test_removal_steps_take_the_data_as_an_argument_not_a_jit_constant(solver, monkeypatch):
    X, y = _binary(n=120, d=7, seed=3)
    model = cu.fit(X, y, l2_reg=1e-2, sigma=100.0, solver=solver, key=jax.random.key(0))
    lowered = {}
    for name in ("newton_step", "cached_removal", "residual_terms"):
        original = getattr(removal, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            lowered[_name] = _original.lower(*args, **kwargs).as_text()
            return _original(*args, **kwargs)

        monkeypatch.setattr(removal, name, spy)
    cu.remove(model, [0, 1])
    assert lowered  # the path really went through a spied step
    for name, text in lowered.items():
        assert "tensor<120x7x" in text, name  # X is an argument of the compiled step...
        constants = [line for line in text.splitlines() if "constant" in line and "120x7" in line]
        assert not constants, (name, constants[:1])  # ...and never baked into it


@pytest.mark.parametrize("loss,solver", [("logistic", "cholesky"), ("logistic", "cached"), ("softmax", "cached"),
                                         ("softmax", "cg")])
def test_float32_training_and_removal_are_certified_in_float64(loss, solver):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True) * (1 + 1e-6)
    y = np.where(X[:, 0] > 0, 1.0, -1.0) if loss == "logistic" else rng.integers(0, 3, 200)
    model = cu.fit(X, y, loss=loss, l2_reg=1e-2, sigma=1.0, dtype="float32", solver=solver, key=jax.random.key(0))
    assert model.params.dtype == np.float32
    for i in range(5):
        model, report = cu.remove(model, [i] if i % 2 else [i, 100 + i])
        assert report.converged
        assert model.ledger.residual_spent >= model.exact_residual() * (1 - 1e-9)
    assert model.certificate().epsilon <= 1.0


# ---------------------------------------------------------------------------------------------------
# Bad input: a ValueError naming the argument, and nothing passed in is modified.


def _bad_fit_cases():
    X, y = _binary(n=30, d=3)
    big = X.copy(); big[4] *= 2.0
    nan = X.copy(); nan[2, 1] = np.nan
    return X, y, [
        ("epsilon", dict(epsilon=0.0)),
        ("epsilon", dict(epsilon=-1.0)),
        ("epsilon", dict(epsilon=float("nan"))),
        ("delta", dict(delta=0.0)),
        ("delta", dict(delta=1.0)),
        ("delta", dict(delta=1.5)),
        ("l2_reg", dict(l2_reg=0.0)),
        ("sigma", dict(sigma=-1.0)),
        ("residual_budget", dict(residual_budget=-0.1)),
        ("sigma", dict(sigma=1.0, residual_budget=0.1)),
        ("loss", dict(loss="hinge")),
        ("bound", dict(bound="loose")),
        ("calibration", dict(calibration="rdp")),
        ("dtype", dict(dtype="float16")),
        ("key", dict(key=0)),
        ("norm", dict(X=big)),
        ("finite", dict(X=nan)),
        ("y must have shape", dict(y=y[:-1])),
        ("y must hold labels", dict(y=np.arange(30.0))),
    ]


def test_bad_fit_arguments_raise_value_error_naming_them():
    X, y, cases = _bad_fit_cases()
    for expected, kwargs in cases:
        args = dict(X=X, y=y)
        args.update(kwargs)
        copies = {k: copy.deepcopy(v) for k, v in args.items() if isinstance(v, np.ndarray)}
        with pytest.raises(ValueError, match=expected):
            cu.fit(args.pop("X"), args.pop("y"), **args)
        for k, v in copies.items():
            np.testing.assert_array_equal(kwargs.get(k, v), v)


def test_bad_indices_raise_and_leave_model_unchanged():
    X, y = _binary(n=40, d=3)
    model = cu.fit(X, y, l2_reg=1e-2, sigma=10.0, key=jax.random.key(0))
    model, _ = cu.remove(model, 5)
    params = np.asarray(model.params).copy()
    for bad, what in [(40, r"\[0, 40\)"), (-1, r"\[0, 40\)"), ([1, 1], "distinct"), (5, "already removed"),
                      (np.ones((2, 2), int), "1-D"), ([0.5], "integer"), (np.flatnonzero(model.retained), "every")]:
        with pytest.raises(ValueError, match="indices"):
            cu.remove(model, bad)
        with pytest.raises(ValueError, match=what):
            cu.remove(model, bad)
    np.testing.assert_array_equal(np.asarray(model.params), params)
    assert model.ledger.removals == 1 and model.n_retained == 39


def test_guo_calibration_warns_where_it_under_noises():
    X, y = _binary(n=40, d=3)
    with pytest.warns(UserWarning, match="under-noises") as record:
        cu.fit(X, y, epsilon=10.0, delta=1e-5, calibration="guo", sigma=1.0)
    assert any("calibration='analytic'" in str(r.message) for r in record)
    import warnings as w
    with w.catch_warnings():
        w.simplefilter("error")
        model = cu.fit(X, y, epsilon=1.0, delta=1e-5, calibration="guo", sigma=1.0)
    assert model.certificate().calibration == "guo"


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_fit_batch_equals_fit_per_key_and_mask(loss):
    X, y = _binary(n=120, d=6)
    num_classes = None
    if loss == "softmax":
        y = (np.argmax(X[:, :3], axis=1)).astype(np.int32)
        num_classes = 3
    kw = dict(loss=loss, l2_reg=1e-2, sigma=0.5, num_classes=num_classes)
    keys = [jax.random.key(s) for s in (3, 4, 5)]
    rng = np.random.default_rng(1)
    masks = rng.random((3, 120)) > 0.2
    masks_before = masks.copy()
    batch = cu.fit_batch(X, y, keys=keys, retained=masks, **kw)
    np.testing.assert_array_equal(masks, masks_before)  # inputs unchanged
    for key, mask, model in zip(keys, masks, batch):
        # Independent path: fit on the retained rows only, with the same key (so the same noise draw).
        single = cu.fit(X[mask], y[mask], key=key, **kw)
        np.testing.assert_allclose(np.asarray(model.perturbation), np.asarray(single.perturbation), rtol=0, atol=0)
        np.testing.assert_allclose(np.asarray(model.params), np.asarray(single.params), rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(model.retained, mask)
        assert model.n_retained == mask.sum()
        # The training residual is the computed norm plus its rounding bound (which grows with the rows
        # stored, 120 here against the retained ones for `single`): above the exact residual, and close.
        assert model.exact_residual() <= model.training_residual <= model.exact_residual() + 1e-9
        assert abs(model.training_residual - single.training_residual) <= 1e-11
    # Later removals index the original rows and keep working.
    kept = np.flatnonzero(masks[0])[:2]
    after, report = cu.remove(batch[0], kept)
    assert not after.retained[kept].any() and not report.retrained


def test_fit_batch_rejects_bad_arguments():
    X, y = _binary(n=50, d=4)
    with pytest.raises(ValueError, match="keys must hold"):
        cu.fit_batch(X, y, keys=[])
    with pytest.raises(ValueError, match="retained must have shape"):
        cu.fit_batch(X, y, keys=[jax.random.key(0)], retained=np.ones((2, 50), bool))
    with pytest.raises(ValueError, match="retained must keep at least one row"):
        cu.fit_batch(X, y, keys=[jax.random.key(0)], retained=np.zeros((1, 50), bool))
    with pytest.raises(ValueError, match="key is not an argument"):
        cu.fit_batch(X, y, keys=[jax.random.key(0)], key=jax.random.key(1))
    with pytest.raises(ValueError, match="l2_reg"):
        cu.fit_batch(X, y, keys=[jax.random.key(0)], l2_reg=-1.0)


def test_retrain_from_a_stalling_warm_start_falls_back_to_a_cold_start():
    # A case where damped Newton from the current parameters stalls (gradient norm ~1 after 1,000 steps)
    # while a start from zero converges: the retrain served by remove must still succeed.
    ds = cu.load("synthetic", classes=(0, 1), n_features=100, n_train=60, n_test=60, seed=0)
    model = cu.fit(ds.X_train, ds.y_train, l2_reg=1e-4, sigma=0.1, epsilon=1.0, delta=1e-4, bound="exact",
                   update="gradient", solver="cholesky", key=jax.random.key(1))
    idx = np.sort(np.random.default_rng([1, 1]).permutation(60)[:20])
    model, _ = cu.remove(model, idx[:5])
    model, report = cu.remove(model, idx[5:10])
    assert model.n_retained == 50
    assert model.exact_residual() <= model.certificate().residual_spent * (1 + 1e-9) + 1e-15
    # Independent check: the retrained model minimises the perturbed objective on the retained rows.
    X, y, keep = ds.X_train, ds.y_train, model.retained
    b = np.asarray(model.perturbation)
    z = X[keep] @ np.asarray(model.params)
    grad = -(X[keep] * (y[keep] / (1 + np.exp(y[keep] * z)))[:, None]).sum(0) + 1e-4 * keep.sum() * np.asarray(model.params) + b
    assert np.linalg.norm(grad) <= 1e-6, (report.retrained, np.linalg.norm(grad))
