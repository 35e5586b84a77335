"""Audits: Clopper-Pearson, threshold tests, epsilon audits (calibrator and end to end), membership inference.

Independent references: scipy.stats.beta / binom computed here, sklearn's ROC, closed forms.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import certunlearn as cu
from certunlearn import audit, removal, train

# ----------------------------------------------------------------------------------------------------
# Clopper-Pearson


@pytest.mark.parametrize("alpha", [0.05, 0.01, 1e-3])
def test_clopper_pearson_matches_beta_quantiles(alpha):
    for n in (1, 7, 100, 1000):
        k = np.arange(n + 1)
        check = range(n + 1) if n <= 100 else (0, 1, 2, 3, 10, 500, 997, 999, 1000)
        upper = audit.clopper_pearson_upper(k, n, alpha)
        lower = audit.clopper_pearson_lower(k, n, alpha)
        for j in check:
            ref_u = 1.0 if j == n else stats.beta(j + 1, n - j).ppf(1 - alpha)
            ref_l = 0.0 if j == 0 else stats.beta(j, n - j + 1).ppf(alpha)
            assert upper[j] == pytest.approx(ref_u, rel=1e-10, abs=1e-14)
            assert lower[j] == pytest.approx(ref_l, rel=1e-10, abs=1e-14)
        # Known closed forms at the ends: P(K = 0 | p) = (1 - p)^n = alpha.
        assert upper[0] == pytest.approx(1 - alpha ** (1 / n), rel=1e-10)
        assert lower[n] == pytest.approx(alpha ** (1 / n), rel=1e-10)
        assert np.all(lower <= k / n + 1e-15) and np.all(k / n <= upper + 1e-15)


def test_clopper_pearson_covers_at_the_stated_level():
    # Exact coverage from the binomial pmf: P_p(upper(K) < p) <= alpha for every p.
    n, alpha = 40, 0.05
    k = np.arange(n + 1)
    upper = audit.clopper_pearson_upper(k, n, alpha)
    lower = audit.clopper_pearson_lower(k, n, alpha)
    for p in np.linspace(0.001, 0.999, 97):
        pmf = stats.binom.pmf(k, n, p)
        assert pmf[upper < p].sum() <= alpha + 1e-12
        assert pmf[lower > p].sum() <= alpha + 1e-12


def test_clopper_pearson_scalar_and_validation():
    assert isinstance(audit.clopper_pearson_upper(3, 10, 0.05), float)
    with pytest.raises(ValueError, match="alpha"):
        audit.clopper_pearson_upper(1, 10, 1.5)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        audit.clopper_pearson_upper(11, 10, 0.05)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        audit.clopper_pearson_lower(0.5, 10, 0.05)


# ----------------------------------------------------------------------------------------------------
# Threshold tests


def test_epsilon_lower_bound_counts_and_formula_by_hand():
    # Selection puts the threshold between 1.5 and 2.5 (b large = positive); evaluation counts by hand.
    sel_a, sel_b = np.array([0.0, 1.0, 1.5]), np.array([2.5, 3.0, 4.0])
    a = np.array([0.0, 0.5, 1.0, 3.0, -1.0, 0.2, 0.1, 0.3])
    b = np.array([3.0, 2.9, 4.0, 0.0, 5.0, 6.0, 7.0, 8.0])
    delta, alpha = 1e-3, 0.1
    t = audit.epsilon_lower_bound(a, b, delta=delta, alpha=alpha, select_a=sel_a, select_b=sel_b)
    assert t.positive == "b" and t.sign == 1 and 1.0 <= t.threshold < 2.5
    fp = int(np.sum(a > t.threshold))
    fn = int(np.sum(b <= t.threshold))
    assert (t.false_positives, t.false_negatives) == (fp, fn) == (1, 1)
    fpr_u = stats.beta(fp + 1, len(a) - fp).ppf(1 - alpha / 2)
    fnr_u = stats.beta(fn + 1, len(b) - fn).ppf(1 - alpha / 2)
    assert t.fpr_upper == pytest.approx(fpr_u, rel=1e-10)
    assert t.fnr_upper == pytest.approx(fnr_u, rel=1e-10)
    expected = math.log((1 - delta - fnr_u) / fpr_u)
    assert t.epsilon_lb == pytest.approx(max(expected, 0.0), rel=1e-10, abs=1e-12)


def test_epsilon_lower_bound_finds_the_reversed_direction():
    rng = np.random.default_rng(3)
    a, b = rng.normal(5.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000)  # M(D') *below* M(D)
    t = audit.epsilon_lower_bound(a, b, delta=1e-5)
    assert t.sign == -1 or t.positive == "a"
    assert t.epsilon_lb > 2.0


@pytest.mark.parametrize("selection", ["split", "union"])
def test_no_false_alarm_on_identical_mechanisms(selection):
    rng = np.random.default_rng(0)
    lbs = [
        audit.epsilon_lower_bound(
            rng.normal(size=400), rng.normal(size=400), delta=0.0, selection=selection,
            thresholds=np.linspace(-3, 3, 25) if selection == "union" else None,
        ).epsilon_lb
        for _ in range(20)
    ]
    assert max(lbs) == 0.0


def test_epsilon_lower_bound_validation():
    with pytest.raises(ValueError, match="delta"):
        audit.epsilon_lower_bound([0.0, 1.0], [0.0, 1.0], delta=1.0)
    with pytest.raises(ValueError, match="thresholds"):
        audit.epsilon_lower_bound([0.0, 1.0], [0.0, 1.0], delta=0.0, selection="union")
    with pytest.raises(ValueError, match="selection"):
        audit.epsilon_lower_bound([0.0, 1.0], [0.0, 1.0], delta=0.0, selection="max")
    with pytest.raises(ValueError, match="finite"):
        audit.epsilon_lower_bound([0.0, np.nan], [0.0, 1.0], delta=0.0)
    with pytest.raises(ValueError, match="both"):
        audit.epsilon_lower_bound([0.0, 1.0], [0.0, 1.0], delta=0.0, select_a=[1.0])


# ----------------------------------------------------------------------------------------------------
# Calibrator audit


@pytest.mark.parametrize(
    "epsilon, delta, num_samples",
    [
        (2.0, 1e-2, 1000),  # N = 1000 catches sigma/2 where delta is not tiny
        (1.0, 1e-5, 100_000),  # at delta = 1e-5, sigma/2 is within reach of N ~ 1e5 (1-D samples are free)
    ],
)
def test_calibrator_audit_flags_halved_sigma_and_passes_the_correct_one(epsilon, delta, num_samples):
    good = audit.audit_calibrator(epsilon=epsilon, delta=delta, num_samples=num_samples, key=0)
    bad = audit.audit_calibrator(epsilon=epsilon, delta=delta, num_samples=num_samples, sigma_scale=0.5, key=0)
    assert good.certified_epsilon == pytest.approx(epsilon, rel=1e-6)
    assert bad.certified_epsilon == good.certified_epsilon  # the claim is unchanged; only the noise is wrong
    assert bad.sigma == pytest.approx(good.sigma / 2)
    assert good.sigma == pytest.approx(
        cu.calibration.sigma_for_budget(1.0, epsilon=epsilon, delta=delta, calibration="analytic")
    )
    assert not good.flagged and good.epsilon_lb <= good.certified_epsilon
    assert bad.flagged and bad.epsilon_lb > bad.certified_epsilon
    assert good.num_samples == num_samples and good.test.n_negative == num_samples


def test_calibrator_audit_union_mode_and_guo_calibration():
    good = audit.audit_calibrator(epsilon=2.0, delta=1e-2, selection="union", calibration="guo", key=1)
    bad = audit.audit_calibrator(epsilon=2.0, delta=1e-2, selection="union", sigma_scale=0.5, key=1)
    assert good.test.selection == "union" and good.test.bound_alpha == pytest.approx(0.05 / (8 * 36))
    assert not good.flagged and bad.flagged
    row = bad.as_dict()
    assert row["kind"] == "calibrator" and row["flagged"] is True and "test_fpr_upper" in row


# ----------------------------------------------------------------------------------------------------
# End-to-end audit


_BATCH = 100  # one batch shape for every logistic end-to-end test, so they share compilations


@pytest.fixture(scope="module")
def digits38():
    ds = cu.load("digits", classes=(3, 8), seed=0, n_train=150)
    return ds


def test_end_to_end_pipeline_equals_fit_and_remove(digits38):
    X, y = np.asarray(digits38.X_train), np.asarray(digits38.y_train)
    n, index, l2_reg, sigma = X.shape[0], 7, 1e-2, 0.2
    removed = np.zeros(n)
    removed[index] = 1.0
    keys = jax.random.split(jax.random.key(5), 2)
    common = dict(l2_reg=l2_reg, sigma=sigma, tol=1e-9 * math.sqrt(n), data_norm=removal.spectral_norm_upper_bound(X),
                  max_row_norm=1.0, loss="logistic", shape=(X.shape[1],), update="guo", bound="data-dependent",
                  removal_method="newton", solver="cholesky", max_steps=100, batch=_BATCH)
    Xj, yj, keep = jnp.asarray(X), jnp.asarray(y), jnp.asarray(1 - removed)
    out = audit._run_seeds(keys, keys, Xj, yj, keep, jnp.asarray(removed), budget=1e9, **common)
    for i in range(2):
        model = cu.fit(X, y, l2_reg=l2_reg, sigma=sigma, key=keys[i], solver="cholesky")
        new_model, report = cu.remove(model, index)
        assert not report.retrained and out.within_budget[i]
        np.testing.assert_allclose(out.published[i], new_model.params, rtol=0, atol=1e-9)
        assert out.residual_spent[i] == pytest.approx(report.residual_spent, rel=1e-6)
        assert out.exact_residual[i] == pytest.approx(new_model.exact_residual(), rel=1e-4, abs=1e-12)
    # Over budget, the mechanism retrains with fresh noise from the model's next key, as api.remove does.
    for i in range(2):
        model = cu.fit(X, y, l2_reg=l2_reg, sigma=sigma, epsilon=1e-5, delta=1e-5, key=keys[i], solver="cholesky")
        retrained, report = cu.remove(model, index)
        assert report.retrained
        if i == 0:
            over = audit._run_seeds(
                keys, keys, Xj, yj, keep, jnp.asarray(removed), budget=model.calibration.residual_budget, **common
            )
            assert not over.within_budget.any()
            np.testing.assert_allclose(over.reference, out.reference)
        np.testing.assert_allclose(over.published[i], retrained.params, rtol=0, atol=1e-8)


def test_end_to_end_audit_passes_newton_and_flags_no_removal(digits38):
    X, y = digits38.X_train, digits38.y_train
    kw = dict(l2_reg=1e-2, epsilon=1.0, delta=1e-5, residual_budget=0.05, num_seeds=200, key=0, batch_size=_BATCH)
    good = audit.audit_end_to_end(X, y, **kw)
    assert good.details["all_converged"]
    assert good.details["retrained_fraction"] < 0.5
    assert good.details["max_residual_spent"] <= good.details["residual_budget"]
    assert good.epsilon_lb <= good.certified_epsilon and not good.flagged
    assert good.num_samples == good.num_select == 100
    # Power check: publishing the model trained on D is not an unlearning; the audit must see it.
    bad = audit.audit_end_to_end(X, y, removal="none", **kw)
    assert bad.flagged and bad.epsilon_lb > 1.0


_SOFTMAX_BATCH = 8  # shared by the softmax end-to-end audit and the softmax shadows: one compilation


@pytest.fixture(scope="module")
def digits012():
    return cu.load("digits", classes=(0, 1, 2), seed=0, n_train=90)


def test_end_to_end_audit_softmax_and_params_distinguisher(digits012):
    r = audit.audit_end_to_end(
        digits012.X_train, digits012.y_train, loss="softmax", l2_reg=1e-2, residual_budget=0.1, num_seeds=16, key=1,
        distinguisher="params", index=3, batch_size=_SOFTMAX_BATCH,
    )
    assert r.details["num_params"] == 64 * 3 and r.details["index"] == 3 and r.details["all_converged"]
    assert r.epsilon_lb <= r.certified_epsilon


def test_end_to_end_audit_validation(digits38):
    X, y = digits38.X_train, digits38.y_train
    with pytest.raises(ValueError, match="num_seeds"):
        audit.audit_end_to_end(X, y, num_seeds=5)
    with pytest.raises(ValueError, match="removal"):
        audit.audit_end_to_end(X, y, removal="forget")
    with pytest.raises(ValueError, match="index"):
        audit.audit_end_to_end(X, y, index=10_000, num_seeds=4)
    with pytest.raises(ValueError, match="norm <= 1"):
        audit.audit_end_to_end(np.asarray(X) * 2, y, num_seeds=4)


def test_run_audit_from_a_config_dict():
    defaults = audit.audit_config_defaults()
    assert defaults == audit.AUDIT_CONFIG_DEFAULTS and defaults is not audit.AUDIT_CONFIG_DEFAULTS
    out = audit.run_audit(
        dict(kinds=("calibrator", "end_to_end"), calibrator_num_samples=200, num_seeds=8, n_train=150, l2_reg=1e-2,
             batch_size=_BATCH)
    )
    assert [r["test_selection"] for r in out["calibrator"]] == ["split", "split"]
    assert [r["sigma_scale"] for r in out["calibrator"]] == [1.0, 0.5]
    (row,) = out["end_to_end"]
    assert row["kind"] == "end-to-end" and row["num_samples"] == 4 and row["dataset"] == "digits"
    with pytest.raises(ValueError, match="unknown audit config keys"):
        audit.run_audit(dict(num_sedes=3))


# ----------------------------------------------------------------------------------------------------
# Membership inference


def test_roc_metrics_match_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(1)
    pos = np.round(rng.normal(0.8, 1.0, 300), 1)  # rounded: ties
    neg = np.round(rng.normal(0.0, 1.0, 500), 1)
    r = audit.roc_metrics(pos, neg, fprs=(0.01, 0.1, 0.5))
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    scores = np.r_[pos, neg]
    assert r.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    for f in (0.01, 0.1, 0.5):
        assert r.tpr_at_fpr[f] == pytest.approx(tpr[fpr <= f].max(), abs=1e-12)
    assert r.advantage == pytest.approx(np.max(tpr - fpr), abs=1e-12)


@pytest.fixture(scope="module")
def memorising():
    """A model that memorised random labels (d = 800 > n = 300, tiny l2_reg), and LiRA shadows.

    Rows 0..299 trained the target; rows 300..599 are i.i.d. rows it never saw. The shadows train on random
    halves of all 600 rows (as many rows as the target) with the target's procedure.
    """
    rng = np.random.default_rng(0)
    n_pop, d, n = 600, 800, 300
    X = rng.normal(size=(n_pop, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.choice([-1.0, 1.0], size=n_pop)  # random labels: only memorisation fits them
    mask = (np.arange(n_pop) < n).astype(float)
    w = train.fit_params(
        jnp.zeros(d), jnp.asarray(X), jnp.asarray(y), jnp.asarray(mask), jnp.zeros(d), 1e-4, 1e-8, loss="logistic",
        solver="cg",
    ).params
    shadows = audit.train_shadow_models(X, y, loss="logistic", l2_reg=1e-4, num_shadow=16, key=1)
    return X, y, w, shadows


def test_attacks_detect_a_memorising_model(memorising):
    X, y, w, shadows = memorising
    members, nonmembers = np.arange(100), np.arange(300, 400)
    r = audit.loss_threshold_attack(w, X[members], y[members], X[nonmembers], y[nonmembers], loss="logistic")
    assert r.auc > 0.8
    assert shadows.masks.sum(0).tolist() == [8] * X.shape[0] and shadows.converged.all()
    for online in (True, False):
        lira = audit.lira_attack(w, X, y, members, nonmembers, loss="logistic", shadows=shadows, online=online)
        assert lira.auc > 0.8
    fixed = audit.lira_attack(w, X, y, members, nonmembers, loss="logistic", shadows=shadows, fix_variance=True)
    assert fixed.auc > 0.8


def test_attacks_near_chance_on_identically_distributed_points(memorising):
    # Exact unlearning: "forgotten" rows the model never saw are distributed like never-seen rows, so no
    # attack beats chance (up to sampling error: sd ~ 0.033 for 150 vs 150).
    X, y, w, shadows = memorising
    forgotten, unseen = np.arange(300, 450), np.arange(450, 600)
    r = audit.loss_threshold_attack(w, X[forgotten], y[forgotten], X[unseen], y[unseen], loss="logistic")
    assert abs(r.auc - 0.5) < 0.07
    lira = audit.lira_attack(w, X, y, forgotten, unseen, loss="logistic", shadows=shadows)
    assert abs(lira.auc - 0.5) < 0.07


def test_lira_trains_its_own_shadows_and_validates(digits012):
    X, y = digits012.X_train, digits012.y_train
    w = audit.train_shadow_models(X, y, loss="softmax", l2_reg=1e-2, num_shadow=_SOFTMAX_BATCH, key=9).params[0]
    r = audit.lira_attack(
        w, X, y, np.arange(10), np.arange(10, 20), loss="softmax", l2_reg=1e-2, num_shadow=_SOFTMAX_BATCH, key=0
    )
    assert 0.0 <= r.auc <= 1.0 and r.n_members == 10
    with pytest.raises(ValueError, match="even"):
        audit.train_shadow_models(X, y, loss="softmax", l2_reg=1e-2, num_shadow=5)
    with pytest.raises(ValueError, match="l2_reg"):
        audit.lira_attack(w, X, y, [0], [1], loss="softmax")


def test_logit_margin_closed_forms():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 3))
    w = rng.normal(size=(3, 4))
    y = rng.integers(0, 4, size=6)
    z = X @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[np.arange(6), y]
    np.testing.assert_allclose(audit.logit_margin(w, X, y, loss="softmax"), np.log(py / (1 - py)), rtol=1e-10)
    yb = np.where(y % 2 == 0, 1.0, -1.0)
    s = 1 / (1 + np.exp(-yb * (X @ w[:, 0])))
    np.testing.assert_allclose(audit.logit_margin(w[:, 0], X, yb, loss="logistic"), np.log(s / (1 - s)), rtol=1e-10)
