"""The ``baselines`` and ``mia`` experiment families, against independent float64 NumPy references.

The unit tests use the settings of the families' smoke configs (digits 3 vs 8; a memorising synthetic task), so
that they share compilations with the sweep tests at the end, which run both smoke sweeps through the runner
and build both figures.
"""

import importlib.util
import math
import pathlib

import numpy as np
import pandas as pd
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import certunlearn as cu
from certunlearn import evaluate, figures, runner
from certunlearn.families import baselines, mia

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"
TIMING = lambda c: c.endswith("_seconds")


def _config_settings(name):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config("smoke").to_dict()
    grid = module.sweep("smoke")
    for key in ("family", "task", "seeds"):
        cfg.pop(key)
    return cfg, grid


@pytest.fixture(scope="module")
def baseline_settings():
    cfg, _ = _config_settings("baselines")
    return {**cfg, "forget_sizes": (1, 10), "warmup": False}


@pytest.fixture(scope="module")
def mia_settings():
    cfg, _ = _config_settings("mia")
    return {**cfg, "l2_reg": 1e-2, "methods": ("newton", "retrain", "none")}


def _sign_predict(w, X):
    return np.where(X @ w >= 0, 1.0, -1.0)


# ----------------------------------------------------------------------------------------------------
# baselines


@pytest.fixture(scope="module")
def baseline_rows(baseline_settings):
    return baselines.run_seed(dict(baseline_settings), 1)


def test_baselines_rows_and_columns(baseline_rows, baseline_settings):
    table = pd.DataFrame(baseline_rows)
    methods = list(evaluate.METHODS)
    assert len(table) == len(baseline_settings["forget_sizes"]) * len(methods)
    assert table.groupby("num_forget")["method"].apply(list).tolist() == [methods] * 2
    expected = {"param_distance", "relative_param_distance", "prediction_disagreement", "max_logit_difference",
                "accuracy_forget", "accuracy_retain", "accuracy_test", "loss_forget", "loss_retain", "loss_test",
                "exact_residual", "unlearn_seconds", "hvp_count", "steps", "dense_hessians", "retrained",
                "certified_epsilon", "residual_spent", "residual_budget", "num_forget", "forget_class_fraction",
                "n_train", "n_test", "n_features", "train_seconds"}
    assert expected <= set(table.columns)
    retrain = table[table["method"] == "retrain"]
    assert (retrain["param_distance"] == 0).all() and (retrain["prediction_disagreement"] == 0).all()
    assert (retrain["exact_residual"] < 1e-6).all()
    newton = table[table["method"] == "newton"]
    assert not newton["retrained"].any()
    assert np.all(np.isfinite(newton["certified_epsilon"])) and (newton["certified_epsilon"] <= 1.0).all()
    others = table[table["method"] != "newton"]
    assert others["certified_epsilon"].isna().all() and others["residual_spent"].isna().all()
    assert np.all(np.isfinite(table["unlearn_seconds"]))
    # Newton gets closer to the retrained model than doing nothing, at every size.
    none = table[table["method"] == "none"].set_index("num_forget")["param_distance"]
    assert (newton.set_index("num_forget")["param_distance"] < 0.1 * none).all()


def test_baselines_match_an_independent_numpy_computation(baseline_rows, baseline_settings):
    """Original and retrained models, Guo's Newton step, accuracies, losses and residuals, all in NumPy."""
    s = baseline_settings
    ds = cu.load("digits", classes=(3, 8), seed=0)
    X, y = np.asarray(ds.X_train, np.float64), np.asarray(ds.y_train, np.float64)
    n, d, lam, seed = X.shape[0], X.shape[1], s["l2_reg"], 1
    # The noise b is the one the family's fit draws from key(seed) (the library's only output we reuse).
    b = np.asarray(baselines.fit_model(baselines.default_settings(**s), ds, seed)[0].perturbation)
    w0 = ref.train(X, y, np.ones(n), b, lam, "logistic", (d,))
    order = np.random.default_rng([seed, 1]).permutation(n)  # the order the family documents
    table = pd.DataFrame(baseline_rows).set_index(["num_forget", "method"])
    for m in s["forget_sizes"]:
        forget = np.sort(order[:m])
        keep = np.ones(n)
        keep[forget] = 0.0
        removed = 1.0 - keep
        w_ref = ref.train(X, y, keep, b, lam, "logistic", (d,))
        w_newton = ref.guo_removal(w0, X, y, keep, removed, lam, "logistic")
        none, newton, retrain = (table.loc[(m, k)] for k in ("none", "newton", "retrain"))
        acc = lambda w, rows: float(np.mean(_sign_predict(w, X[rows]) == y[rows]))
        assert none["accuracy_forget"] == acc(w0, forget)
        assert none["accuracy_retain"] == acc(w0, keep.astype(bool))
        assert none["accuracy_test"] == float(np.mean(_sign_predict(w0, ds.X_test) == ds.y_test))
        assert none["loss_forget"] == pytest.approx(np.mean(ref.loss_values(w0, X[forget], y[forget], "logistic")),
                                                    rel=1e-9)
        assert none["param_distance"] == pytest.approx(np.linalg.norm(w0 - w_ref), rel=1e-6)
        assert newton["param_distance"] == pytest.approx(np.linalg.norm(w_newton - w_ref), rel=1e-4, abs=1e-9)
        assert retrain["accuracy_forget"] == acc(w_ref, forget)
        assert none["exact_residual"] == pytest.approx(
            np.linalg.norm(ref.gradient(w0, X, y, keep, b, lam, "logistic")), rel=1e-6)
        assert newton["exact_residual"] == pytest.approx(
            np.linalg.norm(ref.gradient(w_newton, X, y, keep, b, lam, "logistic")), rel=1e-4, abs=1e-10)
        # The certified residual covers the exact one. With bound="exact" they are the same float64 number
        # computed twice (different summation orders: ~1e-16 absolute after cancellation), hence the margin.
        assert newton["residual_spent"] >= newton["exact_residual"] * (1 - 1e-9)


def test_baselines_class_order_and_determinism(baseline_settings):
    s = {**baseline_settings, "removal_order": "class", "target_class": 8, "forget_sizes": (10,),
         "methods": ("newton", "none")}
    given_settings = dict(s)
    rows = baselines.run_seed(s, 0)
    assert s == given_settings  # inputs unchanged
    assert all(r["forget_class_fraction"] == 1.0 for r in rows)
    again = baselines.run_seed(s, 0)
    for a, b in zip(rows, again):
        assert {k: v for k, v in a.items() if not TIMING(k)} == {k: v for k, v in b.items() if not TIMING(k)}
    # The forgotten rows are 10 of the 8s (label -1), in the documented order; the original model (NumPy) on them:
    ds = cu.load("digits", classes=(3, 8), seed=0)
    X, y = np.asarray(ds.X_train), np.asarray(ds.y_train)
    eights = np.flatnonzero(y == -1.0)
    forget = np.sort(eights[np.random.default_rng([0, 1]).permutation(eights.size)[:10]])
    b = np.asarray(baselines.fit_model(baselines.default_settings(**s), ds, 0)[0].perturbation)
    w = ref.train(X, y, np.ones(len(y)), b, s["l2_reg"], "logistic", (X.shape[1],))
    none = next(r for r in rows if r["method"] == "none")
    assert none["accuracy_forget"] == float(np.mean(_sign_predict(w, X[forget]) == -1.0))
    assert none["loss_forget"] == pytest.approx(np.mean(ref.loss_values(w, X[forget], y[forget], "logistic")),
                                                rel=1e-9)


@settings(max_examples=4)
@given(m=st.sampled_from([1, 10]), seed=st.integers(0, 3))
def test_property_newton_certificate_bounds_the_exact_residual(baseline_settings, m, seed):
    s = {**baseline_settings, "bound": "data-dependent", "forget_sizes": (m,), "methods": ("newton",)}
    (row,) = baselines.run_seed(s, seed)
    if not row["retrained"]:
        assert row["residual_spent"] >= row["exact_residual"]
        assert row["residual_spent"] <= row["residual_budget"]
        assert 0 <= row["certified_epsilon"] <= s["epsilon"]


def test_baselines_validation(baseline_settings):
    with pytest.raises(ValueError, match="unknown baselines settings \\['forget_size'\\]"):
        baselines.run_seed({"forget_size": 3}, 0)
    with pytest.raises(ValueError, match="forget_sizes must be at most"):
        baselines.run_seed({**baseline_settings, "forget_sizes": (100_000,)}, 0)
    with pytest.raises(ValueError, match="target_class"):
        baselines.run_seed({**baseline_settings, "removal_order": "class", "target_class": None}, 0)
    with pytest.raises(ValueError, match="target_class must be one of"):
        baselines.run_seed({**baseline_settings, "removal_order": "class", "target_class": 5}, 0)
    with pytest.raises(ValueError, match="loss='logistic' does not match"):
        baselines.run_seed({**baseline_settings, "classes": None}, 0)
    with pytest.raises(ValueError, match="methods must be"):
        baselines.run_seed({**baseline_settings, "methods": ("newton", "forget")}, 0)
    with pytest.raises(ValueError, match="set sigma or residual_budget"):
        baselines.run_seed({**baseline_settings, "residual_budget": 0.1}, 0)
    with pytest.raises(ValueError, match="seed must be"):
        baselines.run_seed(baseline_settings, -1)


# ----------------------------------------------------------------------------------------------------
# mia


def _numpy_roc(pos, neg, fprs):
    """AUC by counting pairs (ties 1/2) and the best TPR at each FPR over every threshold, in NumPy."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    auc = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (pos.size * neg.size)
    tpr = {}
    for f in fprs:
        best = 0.0
        for t in np.concatenate([pos, neg]):
            if np.mean(neg >= t) <= f:
                best = max(best, float(np.mean(pos >= t)))
        tpr[f] = best
    return auc, tpr


@pytest.fixture(scope="module")
def mia_rows(mia_settings):
    return {seed: mia.run_seed(dict(mia_settings), seed) for seed in (0, 1)}


def test_mia_rows_and_the_positive_control(mia_rows, mia_settings):
    for seed, rows in mia_rows.items():
        table = pd.DataFrame(rows)
        assert len(table) == 3 * 2
        cols = {"auc", "advantage", "n_members", "n_nonmembers", "param_distance", "accuracy_forget", "retrains",
                "certified_epsilon", "unlearn_seconds", "shadows_converged", "train_accuracy"}
        assert cols | {mia.fpr_column(f) for f in mia_settings["fprs"]} <= set(table.columns)
        assert (table["n_members"] == mia_settings["num_forget"]).all()
        assert (table["n_nonmembers"] == mia_settings["n_test"]).all()
        assert table["shadows_converged"].all()
        auc = table.set_index(["method", "attack"])["auc"]
        # The original model memorised the forgotten rows (100 features > 60 rows): both attacks see it.
        for attack in ("loss", "lira"):
            assert auc[("none", attack)] > auc[("retrain", attack)] + 0.1, (seed, attack)
        if seed == 0:  # deterministic given (settings, seed), but for the timings
            again = mia.run_seed(dict(mia_settings), seed)
            assert [{k: v for k, v in r.items() if not TIMING(k)} for r in again] == \
                [{k: v for k, v in r.items() if not TIMING(k)} for r in rows]
        newton = table[table["method"] == "newton"].iloc[0]
        assert newton["requests"] == math.ceil(mia_settings["num_forget"] / mia_settings["removal_batch"])
        assert newton["param_distance"] < 0.05 * table[table["method"] == "none"]["param_distance"].iloc[0]


def test_mia_loss_attack_matches_numpy(mia_rows, mia_settings):
    s = mia_settings
    ds = cu.load("synthetic", classes=(0, 1), n_features=s["n_features"], n_train=s["n_train"], n_test=s["n_test"])
    X, y = np.asarray(ds.X_train), np.asarray(ds.y_train)
    n, d = X.shape
    for seed, rows in mia_rows.items():
        b = np.asarray(baselines.fit_model(mia.default_settings(**s), ds, seed)[0].perturbation)
        forget = np.sort(np.random.default_rng([seed, 1]).permutation(n)[: s["num_forget"]])
        keep = np.ones(n)
        keep[forget] = 0.0
        row = {(r["method"], r["attack"]): r for r in rows}
        for method, mask in (("none", np.ones(n)), ("retrain", keep)):
            w = ref.train(X, y, mask, b, s["l2_reg"], "logistic", (d,))
            pos = -ref.loss_values(w, X[forget], y[forget], "logistic")
            neg = -ref.loss_values(w, ds.X_test, ds.y_test, "logistic")
            auc, tpr = _numpy_roc(pos, neg, s["fprs"])
            r = row[(method, "loss")]
            assert r["auc"] == pytest.approx(auc, abs=1e-12)
            for f in s["fprs"]:
                assert r[mia.fpr_column(f)] == pytest.approx(tpr[f], abs=1e-12)
            assert r["advantage"] >= tpr[max(s["fprs"])] - max(s["fprs"])


def test_mia_validation(mia_settings):
    with pytest.raises(ValueError, match="num_shadow must be even"):
        mia.run_seed({**mia_settings, "num_shadow": 9}, 0)
    with pytest.raises(ValueError, match="fprs must be"):
        mia.run_seed({**mia_settings, "fprs": (0.0, 0.1)}, 0)
    with pytest.raises(ValueError, match="attacks must be"):
        mia.run_seed({**mia_settings, "attacks": ("loss", "shokri")}, 0)
    with pytest.raises(ValueError, match="num_forget must be below"):
        mia.run_seed({**mia_settings, "num_forget": mia_settings["n_train"]}, 0)
    with pytest.raises(ValueError, match="n_features is for dataset='synthetic' only"):
        mia.run_seed({**mia_settings, "dataset": "digits", "classes": (3, 8)}, 0)
    with pytest.raises(ValueError, match="unknown mia settings"):
        mia.run_seed({**mia_settings, "forget_sizes": (1,)}, 0)


# ----------------------------------------------------------------------------------------------------
# Sweeps through the runner, and the figures


@pytest.mark.parametrize("name", ["baselines", "mia"])
def test_smoke_sweep_and_figure(tmp_path, name):
    out = tmp_path / name
    table = runner.sweep(CONFIGS / f"{name}.py", smoke=True, out=out, progress=False)
    _, grid = _config_settings(name)
    assert (table["status"] == "ok").all() and table["cell"].nunique() == len(grid)
    assert table["family"].eq(name).all()
    paths = figures.make_figure(name, out, tmp_path / "figs")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 10_000 for p in paths)
    spec = importlib.util.spec_from_file_location(f"fig_{name}", ROOT / "paper_figures" / f"fig_{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.NAME == name and "Usage: python paper_figures/fig_" in script.__doc__
    assert [p.name for p in script.main(out, tmp_path / "script")] == [f"{name}.png", f"{name}.pdf"]
    # A second sweep resumes: nothing is recomputed, the table is the same.
    again = runner.sweep(CONFIGS / f"{name}.py", smoke=True, out=out, progress=False)
    keep = [c for c in table.columns if not TIMING(c)]
    pd.testing.assert_frame_equal(table[keep], again[keep])
