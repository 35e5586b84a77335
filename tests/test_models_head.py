"""Flax models behind pure functions, and the certified head on a frozen feature extractor.

References are independent float64 NumPy/SciPy code written here: the MLP and CNN forward passes, the
feature normalisation, per-example clipped softmax gradients, and the analytic Gaussian mechanism.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from scipy import stats

from certunlearn import api, data, head, models

F64 = jnp.float64


# ----------------------------------------------------------------------------------------------------
# NumPy references


def np_act(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "softplus":
        return np.logaddexp(0.0, z)
    # jax.nn.gelu's default is the tanh approximation (Hendrycks & Gimpel 2016, eq. 2)
    return 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z ** 3)))


def np_mlp(params, X, activation):
    h = np.asarray(X, np.float64)
    for layer in params["hidden"].values() if isinstance(params["hidden"], dict) else params["hidden"]:
        h = np_act(activation, h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"]))
    return h, h @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])


def _layers(seq):
    return [seq[k] for k in sorted(seq)] if isinstance(seq, dict) else list(seq)


def np_cnn(params, X, image_shape, activation):
    h = np.asarray(X, np.float64).reshape((X.shape[0], *image_shape))
    for conv in _layers(params["convs"]):
        K, b = np.asarray(conv["kernel"]), np.asarray(conv["bias"])  # (3, 3, in, out), cross-correlation
        pad = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        H, W = h.shape[1:3]
        out = np.zeros((h.shape[0], H, W, K.shape[3]))
        for i in range(3):
            for j in range(3):
                out += np.einsum("nhwc,cd->nhwd", pad[:, i:i + H, j:j + W, :], K[i, j])
        h = np_act(activation, out + b)
        H2, W2 = H // 2, W // 2
        h = h[:, : 2 * H2, : 2 * W2].reshape(h.shape[0], H2, 2, W2, 2, -1).mean(axis=(2, 4))
    h = h.reshape(h.shape[0], -1)
    phi = np_act(activation, h @ np.asarray(params["dense"]["kernel"]) + np.asarray(params["dense"]["bias"]))
    return phi, phi @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])


def np_normalize(F):
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    return np.divide(F, norms, out=np.zeros_like(F), where=norms > 0)


# ----------------------------------------------------------------------------------------------------
# models


@pytest.mark.parametrize("activation", ["relu", "tanh", "softplus", "gelu"])
def test_mlp_matches_numpy_forward(activation):
    net = models.mlp((7, 5), 3, activation=activation, dtype=F64)
    params = net.init(jax.random.key(3), jnp.zeros((1, 4)))
    X = np.random.default_rng(0).normal(size=(6, 4))
    phi_ref, out_ref = np_mlp(params, X, activation)
    np.testing.assert_allclose(np.asarray(net.apply(params, X)), out_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(models.features(net, params, X)), phi_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.jit(net.apply)(params, X)), out_ref, rtol=1e-12, atol=1e-12)


def test_cnn_matches_numpy_forward():
    shape = (6, 5, 2)  # odd width: pooling floors
    net = models.cnn((3, 4), 3, image_shape=shape, hidden=5, activation="tanh", dtype=F64)
    params = net.init(jax.random.key(1), jnp.zeros((1, 60)))
    X = np.random.default_rng(1).normal(size=(3, 60))
    phi_ref, out_ref = np_cnn(params, X, shape, "tanh")
    np.testing.assert_allclose(np.asarray(net.apply(params, X)), out_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(np.asarray(net.features(params, X)), phi_ref, rtol=1e-11, atol=1e-12)


def test_models_deterministic_given_key_and_num_params():
    net = models.mlp((8,), 3)
    a = net.init(jax.random.key(0), jnp.zeros((1, 5)))
    b = net.init(jax.random.key(0), jnp.zeros((2, 5)))
    c = net.init(jax.random.key(1), jnp.zeros((1, 5)))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(ravel_pytree(a)[0], ravel_pytree(c)[0])
    assert models.num_params(a) == 5 * 8 + 8 + 8 * 3 + 3
    cnet = models.cnn((2, 3), 4, image_shape=(8, 8), hidden=6)
    p = cnet.init(jax.random.key(0), jnp.zeros((1, 64)))
    assert models.num_params(p) == (9 * 1 * 2 + 2) + (9 * 2 * 3 + 3) + (2 * 2 * 3 * 6 + 6) + (6 * 4 + 4)
    q = cnet.init(jax.random.key(0), jnp.zeros((1, 64)))
    assert np.array_equal(ravel_pytree(p)[0], ravel_pytree(q)[0])


def test_models_jit_vmap_and_hvp():
    net = models.cnn((2,), 3, image_shape=(4, 4), hidden=5, dtype=F64)
    keys = jax.random.split(jax.random.key(0), 3)
    singles = [net.init(k, jnp.zeros((1, 16))) for k in keys]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *singles)
    X = np.random.default_rng(2).normal(size=(4, 16))
    out = jax.jit(jax.vmap(net.apply, in_axes=(0, None)))(stacked, X)
    for i, params in enumerate(singles):
        np.testing.assert_allclose(np.asarray(out[i]), np_cnn(params, X, (4, 4, 1), "relu")[1], rtol=1e-11)
    # A Hessian-vector product through the flat parameter vector vs central differences of the gradient.
    flat, unravel = ravel_pytree(singles[0])
    f = lambda v: jnp.sum(jnp.tanh(net.apply(unravel(v), X)) ** 2)
    v = jnp.asarray(np.random.default_rng(3).normal(size=flat.shape))
    grad = jax.jit(jax.grad(f))
    hvp = jax.jit(lambda w, u: jax.jvp(jax.grad(f), (w,), (u,))[1])(flat, v)
    h = 1e-5
    fd = (grad(flat + h * v) - grad(flat - h * v)) / (2 * h)
    np.testing.assert_allclose(np.asarray(hvp), np.asarray(fd), rtol=1e-5, atol=1e-7)


def test_models_reject_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        models.mlp((4,), activation="sigmoid")
    with pytest.raises(ValueError, match="hidden"):
        models.mlp((4, 0))
    with pytest.raises(ValueError, match="num_outputs"):
        models.cnn(num_outputs=0)
    with pytest.raises(ValueError, match="image_shape"):
        models.cnn((2, 2, 2), image_shape=(4, 4))
    net = models.cnn((2,), 3, image_shape=(4, 4), hidden=5)
    with pytest.raises(ValueError, match="prod\\(image_shape\\) = 16"):
        net.init(jax.random.key(0), jnp.zeros((1, 15)))


# ----------------------------------------------------------------------------------------------------
# split and features


# The smoke config's data and head shapes (digits, 600 + 300 rows, 300 private rows, 64 features, 10
# classes, solver "cg"), shared by these tests so that the head compiles once for all of them.
SMOKE_DATA = ("digits", None, 600, 300, 0)
HEAD_KW = dict(l2_reg=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, solver="cg")


@pytest.fixture(scope="module")
def digits_raw():
    from certunlearn.families import head as family

    return family._load(*SMOKE_DATA)


def test_split_public_disjoint_deterministic_and_public_statistics_only(digits_raw):
    s = head.split_public(digits_raw, fraction=0.3, key=jax.random.key(0))
    n = digits_raw.n_train
    assert np.intersect1d(s.public_index, s.private_index).size == 0
    assert np.array_equal(np.sort(np.concatenate([s.public_index, s.private_index])), np.arange(n))
    assert s.public_index.size == round(0.3 * n)
    again = head.split_public(digits_raw, fraction=0.3, key=jax.random.key(0))
    assert np.array_equal(again.private_X, s.private_X)
    # Independent reference of the preprocessing: public max-abs scale and mean, then unit rows.
    Xp = np.asarray(digits_raw.X_train, np.float64)[s.public_index]
    scale, mean = np.abs(Xp).max(), (Xp / np.abs(Xp).max()).mean(axis=0)
    ref = np_normalize(np.asarray(digits_raw.X_train, np.float64)[s.private_index] / scale - mean)
    np.testing.assert_allclose(s.private_X, ref, atol=1e-9)
    assert np.all(np.linalg.norm(s.private_X, axis=1) <= 1.0)
    # Changing a private row changes nothing public (the statistics are public only).
    X = np.array(digits_raw.X_train)
    X[s.private_index[0]] += 7.0
    changed = data.Dataset(X, digits_raw.y_train, digits_raw.X_test, digits_raw.y_test, "digits",
                           digits_raw.classes, digits_raw.num_classes, digits_raw.task)
    s2 = head.split_public(changed, fraction=0.3, key=jax.random.key(0))
    assert np.array_equal(s2.public_X, s.public_X) and np.array_equal(s2.test_X, s.test_X)
    assert np.array_equal(s2.private_X[1:], s.private_X[1:])
    with pytest.raises(ValueError, match="fraction"):
        head.split_public(digits_raw, fraction=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        head.split_public(digits_raw, fraction=0.5, key=0)


SOFTPLUS_NET = models.mlp((5,), 2, activation="softplus", dtype=F64)


@settings(max_examples=8)
@given(scale=st.floats(1e-6, 1e6), seed=st.integers(0, 2 ** 16))
def test_head_features_have_norm_at_most_one(scale, seed):
    net = SOFTPLUS_NET
    params = net.init(jax.random.key(seed), jnp.zeros((1, 3)))
    X = scale * np.random.default_rng(seed).normal(size=(7, 3))
    X_before = X.copy()
    mean = np.random.default_rng(seed + 1).normal(size=5)
    F = head.head_features(net, params, X, mean=mean)
    assert np.array_equal(X, X_before)
    assert np.all(np.sqrt(np.sum(F * F, axis=1)) <= 1.0)
    ref = np_normalize(np_mlp(params, X, "softplus")[0] - mean)
    np.testing.assert_allclose(F, ref, atol=1e-9)


# ----------------------------------------------------------------------------------------------------
# the certified head


@pytest.fixture(scope="module")
def pipeline(digits_raw):
    s = head.split_public(digits_raw, fraction=0.5, key=jax.random.key(0))
    net = models.mlp((64,), 10, dtype=F64)
    kw = dict(HEAD_KW, sigma=4.0, num_classes=10)  # a budget for a few Newton steps at n = 300
    pipe = head.fit_pipeline(net, s, key=jax.random.key(5), extractor_steps=60, batch_size=64,
                             learning_rate=3e-3, **kw)
    return s, pipe, kw


def test_head_removal_equals_convex_case_on_fixed_features(pipeline):
    s, pipe, kw = pipeline
    assert pipe.head.config.loss == "softmax" and pipe.disjoint_verified
    F = pipe.features(s.private_X)
    head_key = jax.random.split(jax.random.key(5))[1]
    direct = api.fit(F, s.private_y, loss="softmax", key=head_key, **kw)
    np.testing.assert_array_equal(np.asarray(direct.params), np.asarray(pipe.head.params))
    p_pipe, d_model = pipe, direct
    for idx in ([3], 10, 40):  # single removals: one compiled step shape for all of them
        p_pipe, r1 = p_pipe.remove(idx)
        d_model, r2 = api.remove(d_model, idx)
        assert not r1.retrained
        np.testing.assert_array_equal(np.asarray(p_pipe.head.params), np.asarray(d_model.params))
        assert r1.residual_bound == r2.residual_bound and r1.retrained == r2.retrained
    assert p_pipe.certificate().head == d_model.certificate()
    assert pipe.head.n_retained == s.private_X.shape[0]  # the original pipeline is unchanged
    # Removal approximates retraining the head on the retained features with the same noise.
    keep = p_pipe.head.retained
    retrained = api.fit(F[keep], np.asarray(s.private_y)[keep], loss="softmax", key=head_key, **kw)
    assert np.array_equal(np.asarray(retrained.perturbation), np.asarray(p_pipe.head.perturbation))
    gap = np.linalg.norm(np.asarray(p_pipe.head.params - retrained.params))
    moved = np.linalg.norm(np.asarray(pipe.head.params - retrained.params))
    assert gap < 1e-2 * moved
    acc = p_pipe.score(s.test_X, s.test_y)
    ref_acc = np.mean(np.argmax(pipe.features(s.test_X) @ np.asarray(p_pipe.head.params), axis=1) == s.test_y)
    assert acc == pytest.approx(ref_acc) and acc > 0.6  # 10 classes, chance 0.1


def test_public_certificate_states_the_assumption(pipeline):
    _, pipe, _ = pipeline
    cert = pipe.certificate()
    assert cert.extractor == "public" and cert.extractor_privacy is None
    assert (cert.epsilon, cert.delta) == (cert.head.epsilon, cert.head.delta)
    text = str(cert)
    assert "ASSUMPTION" in text and "disjoint" in text and "checked disjoint" in text
    assert "head" in text


def test_fit_pipeline_rejects_overlapping_split(pipeline):
    s, pipe, kw = pipeline
    bad = s._replace(public_index=np.concatenate([s.public_index, s.private_index[:1]]))
    with pytest.raises(ValueError, match="overlap"):
        head.fit_pipeline(pipe.model, bad, key=jax.random.key(0), extractor_steps=1, **kw)


def test_train_extractor_is_deterministic_and_learns(digits_raw):
    s = head.split_public(digits_raw, fraction=0.5, key=jax.random.key(1))
    net = models.mlp((8,), 10)
    a = head.train_extractor(net, s.public_X, s.public_y, key=jax.random.key(2), steps=40, batch_size=32,
                             learning_rate=1e-2)
    b = head.train_extractor(net, s.public_X, s.public_y, key=jax.random.key(2), steps=40, batch_size=32,
                             learning_rate=1e-2)
    assert np.array_equal(ravel_pytree(a.params)[0], ravel_pytree(b.params)[0])
    assert a.losses[-10:].mean() < 0.75 * a.losses[:3].mean()
    with pytest.raises(ValueError, match="labels in 0..9"):
        head.train_extractor(net, s.public_X, np.full(len(s.public_y), 10), key=jax.random.key(0), steps=1)


# ----------------------------------------------------------------------------------------------------
# DP-SGD


def np_clipped_gradient(W, b, X, y, weights, clip, expected):
    """Per-example softmax cross-entropy gradients of a linear model, clipped (global norm), summed."""
    z = X @ W + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    r = p.copy()
    r[np.arange(len(y)), y] -= 1.0
    gW = np.einsum("ni,nk->nik", X, r)
    gb = r
    norms = np.sqrt(np.sum(gW ** 2, axis=(1, 2)) + np.sum(gb ** 2, axis=1))
    f = weights * np.minimum(1.0, clip / norms)
    return np.einsum("n,nik->ik", f, gW) / expected, np.einsum("n,nk->k", f, gb) / expected


def test_private_gradient_matches_numpy_clipping():
    net = models.mlp((), 3, dtype=F64)
    params = net.init(jax.random.key(0), jnp.zeros((1, 200)))
    rng = np.random.default_rng(0)
    X, y = 3 * rng.normal(size=(6, 200)), rng.integers(0, 3, 6)
    step = jax.jit(lambda w, k, std: head.private_gradient(net, params, X, y, w, key=k, clip_norm=0.7,
                                                            noise_std=std, expected_batch=2.5)[0])
    weights = np.array([1, 1, 1, 1, 0, 0], np.float64)
    g = step(weights, jax.random.key(1), 0.0)
    gW, gb = np_clipped_gradient(np.asarray(params["head"]["kernel"]), np.asarray(params["head"]["bias"]), X, y,
                                 weights, 0.7, 2.5)
    np.testing.assert_allclose(np.asarray(g["head"]["kernel"]), gW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(g["head"]["bias"]), gb, rtol=1e-10, atol=1e-12)
    # The noise: with all weights 0 the output is N(0, (std / expected_batch)^2) per coordinate.
    sample = np.asarray(ravel_pytree(step(np.zeros(6), jax.random.key(2), 2.0))[0])
    assert sample.size == 603 and stats.kstest(sample / (2.0 / 2.5), "norm").pvalue > 1e-3


def analytic_delta(epsilon, mu):
    """Balle & Wang 2018, Thm. 8: delta of a Gaussian mechanism with sensitivity/sigma = mu."""
    return stats.norm.cdf(mu / 2 - epsilon / mu) - math.exp(epsilon) * stats.norm.cdf(-mu / 2 - epsilon / mu)


@pytest.mark.parametrize("z,steps", [(2.0, 1), (4.0, 9)])
def test_dp_sgd_epsilon_full_batch_is_the_analytic_gaussian(z, steps):
    # q = 1: T Gaussian steps compose to one Gaussian with mu = sqrt(T) / z; the PLD accountant is tight.
    delta = 1e-5
    eps_pld = head.dp_sgd_epsilon(noise_multiplier=z, sampling_rate=1.0, steps=steps, delta=delta, accountant="pld")
    mu = math.sqrt(steps) / z
    assert analytic_delta(eps_pld, mu) <= delta * 1.001
    assert analytic_delta(eps_pld * 0.98, mu) > delta
    eps_rdp = head.dp_sgd_epsilon(noise_multiplier=z, sampling_rate=1.0, steps=steps, delta=delta)
    assert eps_rdp >= eps_pld * 0.999  # RDP is an upper bound


def test_dp_sgd_epsilon_matches_dp_accounting_directly():
    import dp_accounting

    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.1)), 250)
    ours = head.dp_sgd_epsilon(noise_multiplier=1.1, sampling_rate=0.02, steps=250, delta=1e-5)
    assert ours == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)
    with pytest.raises(ValueError, match="sampling_rate"):
        head.dp_sgd_epsilon(noise_multiplier=1.0, sampling_rate=0.0, steps=1, delta=1e-5)


def test_group_privacy_and_composition_formulas():
    assert head.group_privacy(0.3, 1e-6, 0) == (0.0, 0.0)
    e, d = head.group_privacy(0.3, 1e-6, 4)
    assert e == pytest.approx(1.2) and d == pytest.approx(4 * math.exp(0.9) * 1e-6)
    e, d = head.compose((0.2, 1e-6), (1.0, 1e-4))
    assert e == pytest.approx(1.2)
    assert d == pytest.approx(max(math.e * 1e-6 + 1e-4, math.exp(0.2) * 1e-4 + 1e-6))


def test_dp_extractor_pipeline_certificate(digits_raw):
    s = head.split_public(digits_raw, fraction=0.5, key=jax.random.key(0))
    net = models.mlp((64,), 10, dtype=F64)
    dp = head.DPSGD(clip_norm=1.0, noise_multiplier=1.5, delta=1e-5)
    pipe = head.fit_pipeline(net, s, key=jax.random.key(0), extractor_steps=5, batch_size=50, dp=dp,
                             num_classes=10, **HEAD_KW)
    priv = pipe.extractor.privacy
    assert priv.sampling_rate == pytest.approx(50 / s.private_X.shape[0]) and priv.steps == 5
    assert priv.epsilon == pytest.approx(head.dp_sgd_epsilon(noise_multiplier=1.5, sampling_rate=priv.sampling_rate,
                                                             steps=5, delta=1e-5))
    p2, _ = pipe.remove(0)
    p2, _ = p2.remove(1)
    cert = p2.certificate()
    group = head.group_privacy(priv.epsilon, priv.delta, 2)
    assert (cert.epsilon, cert.delta) == head.compose(group, (cert.head.epsilon, cert.head.delta))
    assert cert.extractor == "dp-sgd" and "DP-SGD" in str(cert) and "ASSUMPTION" in str(cert)


# ----------------------------------------------------------------------------------------------------
# the experiment family


def _smoke_settings(**changes):
    import pathlib

    from certunlearn import runner

    config, _ = runner.load_config(pathlib.Path(__file__).parents[1] / "experiments" / "configs" / "head.py",
                                   smoke=True)
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for name in ("family", "task", "seeds"):
        values.pop(name, None)
    return {**values, **changes}


def test_family_run_seed_raw_pixels_is_deterministic_and_consistent():
    from certunlearn.families import head as family

    settings = _smoke_settings(extractor="none")
    assert (settings["dataset"], None, settings["n_train"], settings["n_test"], 0) == SMOKE_DATA
    (row,) = family.run_seed(settings, 0)
    (again,) = family.run_seed(settings, 0)
    for k, v in row.items():
        if not k.endswith("_seconds"):
            assert (v == again[k]) or (isinstance(v, float) and math.isnan(v) and math.isnan(again[k])), k
    assert row["n_public"] + row["n_private"] == 600 and row["feature_dim"] == 64 and row["head_params"] == 640
    assert row["removals_before_retrain"] <= settings["num_removals"]
    assert row["budget_exhausted"] == (row["removals_before_retrain"] < settings["num_removals"])
    assert row["residual_spent"] <= row["residual_budget"] and row["epsilon_spent"] <= 1.0
    # Unlearned vs retrained (same noise): much closer than the original model was.
    assert row["relative_distance"] < 0.05
    # The row's test accuracy is that of an independent refit with the documented recipe.
    ds = data.load("digits", n_train=600, n_test=300, normalize=False)
    split_key, _, head_key = jax.random.split(jax.random.key(0), 3)
    s = head.split_public(ds, fraction=0.5, key=split_key)
    m = api.fit(s.private_X, s.private_y, loss="softmax", num_classes=10, key=head_key, **HEAD_KW)
    pred = np.argmax(s.test_X @ np.asarray(m.params), axis=1)
    assert row["test_accuracy"] == pytest.approx(np.mean(pred == s.test_y))


def test_family_smoke_sweep_and_figure(tmp_path):
    import pathlib

    from certunlearn import figures, runner

    config = pathlib.Path(__file__).parents[1] / "experiments" / "configs" / "head.py"
    runner.sweep(config, smoke=True, out=tmp_path / "results", progress=False)
    table = figures.load_results(tmp_path / "results", "head")
    assert set(table["extractor"]) == {"none", "mlp", "cnn"} and (table["status"] == "ok").all()
    assert table.groupby("extractor")["seed"].nunique().min() == 2
    assert (table["residual_spent"] <= table["residual_budget"]).all()
    assert (table["feature_dim"] == 64).all() and (table["test_accuracy"] > 0.5).all()
    paths = figures.make_figure("head", tmp_path / "results", tmp_path / "figures")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
