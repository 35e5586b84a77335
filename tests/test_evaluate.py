"""Metrics and unlearning baselines, against independent NumPy/SciPy references (tests/reference.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import scipy.special

import certunlearn as cu
from certunlearn import evaluate


@pytest.fixture(scope="module")
def digits38():
    # The same rows as tests/test_audit.py, so the two files share compilations in one pytest process.
    return cu.load("digits", classes=(3, 8), seed=0, n_train=150)


@pytest.fixture(scope="module")
def model(digits38):
    return cu.fit(digits38.X_train, digits38.y_train, l2_reg=1e-2, sigma=0.2, key=jax.random.key(0), solver="cholesky")


def _softmax_problem(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, k, size=n)
    b = 0.1 * rng.normal(size=(d, k))
    w = ref.train(X, y, np.ones(n), b, 1e-2, "softmax", (d, k))
    return X, y, b, w


# ----------------------------------------------------------------------------------------------------
# Metrics


def _numpy_metrics(w, w_ref, X, y, forget, X_test, y_test, lam, b, loss):
    keep = np.ones(len(y), bool)
    keep[forget] = False

    def pred(v, A):
        z = A @ v
        return np.where(z >= 0, 1.0, -1.0) if loss == "logistic" else np.argmax(z, 1)

    def acc(v, A, t):
        return float(np.mean(pred(v, A) == t))

    def mloss(v, A, t):
        return float(np.mean(ref.loss_values(v, A, t, loss)))

    grad = ref.gradient(w, X, y, keep.astype(float), b, lam, loss)
    return dict(
        param_distance=np.sqrt(np.sum((w - w_ref) ** 2)),
        relative_param_distance=np.sqrt(np.sum((w - w_ref) ** 2)) / np.sqrt(np.sum(w_ref**2)),
        prediction_disagreement=np.mean(pred(w, X_test) != pred(w_ref, X_test)),
        max_logit_difference=np.max(np.abs(X_test @ w - X_test @ w_ref)),
        accuracy_forget=acc(w, X[forget], y[forget]),
        accuracy_retain=acc(w, X[keep], y[keep]),
        accuracy_test=acc(w, X_test, y_test),
        loss_forget=mloss(w, X[forget], y[forget]),
        loss_retain=mloss(w, X[keep], y[keep]),
        loss_test=mloss(w, X_test, y_test),
        exact_residual=np.sqrt(np.sum(grad**2)),
    )


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_metrics_match_numpy(loss):
    rng = np.random.default_rng(1)
    n, d, k = 40, 4, 3
    X = rng.normal(size=(n, d))
    X_test = rng.normal(size=(25, d))
    if loss == "logistic":
        y, y_test = rng.choice([-1.0, 1.0], n), rng.choice([-1.0, 1.0], 25)
        shape = (d,)
    else:
        y, y_test = rng.integers(0, k, n), rng.integers(0, k, 25)
        shape = (d, k)
    w, w_ref, b = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)
    forget = np.array([3, 11, 29])
    m = evaluate.unlearning_metrics(
        w, w_ref, X, y, forget, X_test, y_test, loss=loss, l2_reg=0.05, perturbation=b, seconds=1.5, hvp_count=7
    )
    expected = _numpy_metrics(w, w_ref, X, y, forget, X_test, y_test, 0.05, b, loss)
    for name, value in expected.items():
        assert getattr(m, name) == pytest.approx(value, rel=1e-10, abs=1e-12), name
    assert m.seconds == 1.5 and m.hvp_count == 7 and m.as_dict()["hvp_count"] == 7


def test_metrics_retained_mask_excludes_earlier_removals():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 3))
    y = rng.choice([-1.0, 1.0], 10)
    w = rng.normal(size=3)
    retained = np.ones(10, bool)
    retained[[0, 1]] = False  # removed earlier
    m = evaluate.unlearning_metrics(w, w, X, y, [5], X, y, loss="logistic", l2_reg=0.1, retained=retained)
    keep = np.isin(np.arange(10), [2, 3, 4, 6, 7, 8, 9])
    assert m.loss_retain == pytest.approx(np.mean(ref.loss_values(w, X[keep], y[keep], "logistic")), rel=1e-12)
    grad = ref.gradient(w, X, y, keep.astype(float), np.zeros(3), 0.1, "logistic")
    assert m.exact_residual == pytest.approx(np.linalg.norm(grad), rel=1e-10)
    with pytest.raises(ValueError, match="same shape"):
        evaluate.unlearning_metrics(w, w[:2], X, y, [5], X, y, loss="logistic", l2_reg=0.1)
    with pytest.raises(ValueError, match="forget_idx"):
        evaluate.unlearning_metrics(w, w, X, y, [10], X, y, loss="logistic", l2_reg=0.1)


# ----------------------------------------------------------------------------------------------------
# Baselines


def test_retrain_equals_the_numpy_retrain_with_the_same_noise(model, digits38):
    X, y = np.asarray(digits38.X_train, np.float64), np.asarray(digits38.y_train, np.float64)
    forget = [4, 40, 77]
    r = evaluate.unlearn("retrain", model, forget_idx=forget)
    keep = np.ones(len(y))
    keep[forget] = 0
    expected = ref.train(X, y, keep, np.asarray(model.perturbation), 1e-2, "logistic", (X.shape[1],))
    np.testing.assert_allclose(r.params, expected, rtol=0, atol=1e-9)
    assert r.retained.sum() == len(y) - 3 and not r.retained[forget].any()
    assert r.dense_hessians == r.steps > 0 and r.hvp_count == 0 and r.seconds > 0


def test_retrain_softmax_raw_params():
    X, y, b, w = _softmax_problem()
    r = evaluate.unlearn("retrain", w, X, y, [0, 1], loss="softmax", l2_reg=1e-2, perturbation=b)
    keep = np.ones(len(y))
    keep[[0, 1]] = 0
    np.testing.assert_allclose(r.params, ref.train(X, y, keep, b, 1e-2, "softmax", w.shape), rtol=0, atol=1e-9)


def test_none_leaves_params_and_model_unchanged(model):
    before = np.array(model.params)
    r = evaluate.unlearn("none", model, forget_idx=[1, 2])
    np.testing.assert_array_equal(r.params, before)
    np.testing.assert_array_equal(model.params, before)
    assert model.retained.all() and r.steps == 0 and r.model is None


def test_newton_on_a_model_is_certunlearn_remove(model):
    r = evaluate.unlearn("newton", model, forget_idx=[5])
    expected, report = cu.remove(model, 5)
    np.testing.assert_allclose(r.params, expected.params, rtol=0, atol=1e-12)
    assert r.report.residual_bound == pytest.approx(report.residual_bound, rel=1e-9)
    assert r.model.n_retained == model.n_retained - 1 and model.retained.all()
    assert r.dense_hessians == 0 or r.hvp_count == 1  # cholesky: one dense Hessian + the certificate's HVP


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_newton_on_raw_params_is_guos_update(solver):
    X, y, b, w = _softmax_problem(seed=3)
    removed = np.zeros(len(y), bool)
    removed[[2, 9]] = True
    r = evaluate.unlearn("newton", w, X, y, [2, 9], loss="softmax", l2_reg=1e-2, perturbation=b, solver=solver)
    expected = ref.guo_removal(w, X, y, (~removed).astype(float), removed, 1e-2, "softmax")
    np.testing.assert_allclose(r.params, expected, rtol=0, atol=1e-8)
    assert (r.hvp_count > 0) if solver == "cg" else (r.dense_hessians == 1)


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_finetune_and_gradient_ascent_move_the_right_way(loss):
    if loss == "softmax":
        X, y, b, w = _softmax_problem(seed=4)
    else:
        rng = np.random.default_rng(4)
        X = rng.normal(size=(60, 5))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        y = np.where(X[:, 0] + 0.5 * rng.normal(size=60) > 0, 1.0, -1.0)
        b = 0.1 * rng.normal(size=5)
        w = ref.train(X, y, np.ones(60), b, 1e-2, "logistic", (5,))
    forget = np.arange(6)
    keep = np.ones(len(y))
    keep[forget] = 0
    retrained = ref.train(X, y, keep, b, 1e-2, loss, w.shape)

    def objective(v):  # L_b on the retained rows, sum convention
        return ref.objective(np.asarray(v), X, y, keep, b, 1e-2, loss)

    def forget_loss(v):
        return np.mean(ref.loss_values(np.asarray(v), X[forget], y[forget], loss))

    kw = dict(loss=loss, l2_reg=1e-2, perturbation=b)
    ft = evaluate.unlearn("finetune", w, X, y, forget, steps=20, **kw)
    assert not np.allclose(ft.params, w)
    assert objective(ft.params) < objective(w)  # descends the retained objective ...
    assert np.linalg.norm(ft.params - retrained) < np.linalg.norm(w - retrained)  # ... towards the retrain
    ga = evaluate.unlearn("gradient_ascent", w, X, y, forget, steps=5, **kw)
    assert not np.allclose(ga.params, w)
    assert forget_loss(ga.params) > forget_loss(w)  # ascends the forgotten points' loss
    adam = evaluate.unlearn("gradient_ascent", w, X, y, forget, steps=5, optimizer="adam", learning_rate=0.05, **kw)
    assert forget_loss(adam.params) > forget_loss(w)
    # One SGD step by hand: w + lr * grad of the mean forgotten loss.
    one = evaluate.unlearn("gradient_ascent", w, X, y, forget, steps=1, learning_rate=0.1, **kw)
    grad = ref.gradient(w, X, y, (~keep.astype(bool)).astype(float), np.zeros_like(w), 0.0, loss) / len(forget)
    np.testing.assert_allclose(one.params, w + 0.1 * grad, rtol=0, atol=1e-12)


def test_compare_methods_rows(model, digits38):
    rows = evaluate.compare_methods(model, [3, 8], digits38.X_test, digits38.y_test, steps=5)
    assert [r["method"] for r in rows] == list(evaluate.METHODS)
    by = {r["method"]: r for r in rows}
    assert by["retrain"]["param_distance"] == 0.0 and by["retrain"]["exact_residual"] < 1e-6
    assert by["none"]["param_distance"] > by["newton"]["param_distance"]  # Newton gets closer to retraining
    assert by["newton"]["exact_residual"] < by["none"]["exact_residual"]
    assert all(math.isfinite(r["seconds"]) for r in rows)


def test_compare_methods_certificate_columns_and_method_kwargs(model, digits38):
    forget = [3, 8]
    rows = evaluate.compare_methods(
        model, forget, digits38.X_test, digits38.y_test, methods=("newton", "finetune", "gradient_ascent"),
        warmup=False, steps=2, method_kwargs={"finetune": {"steps": 4, "learning_rate": 0.5}},
    )
    by = {r["method"]: r for r in rows}
    assert by["finetune"]["steps"] == 4 and by["gradient_ascent"]["steps"] == 2  # per-method wins over shared
    # The same 4 SGD steps by hand (NumPy, mean objective on the retained rows, same noise b).
    X, y = np.asarray(digits38.X_train, np.float64), np.asarray(digits38.y_train, np.float64)
    keep = np.ones(len(y))
    keep[forget] = 0.0
    w = np.asarray(model.params, np.float64)
    b = np.asarray(model.perturbation, np.float64)
    for _ in range(4):
        w = w - 0.5 * ref.gradient(w, X, y, keep, b, model.config.l2_reg, "logistic") / keep.sum()
    w_ref = np.asarray(evaluate.unlearn("retrain", model, forget_idx=forget).params)
    assert by["finetune"]["param_distance"] == pytest.approx(np.linalg.norm(w - w_ref), rel=1e-9)
    new_model, _ = cu.remove(model, forget)
    cert = new_model.certificate()
    assert by["newton"]["certified_epsilon"] == cert.epsilon and by["newton"]["residual_spent"] == cert.residual_spent
    assert by["newton"]["residual_budget"] == cert.residual_budget
    assert by["newton"]["residual_spent"] >= by["newton"]["exact_residual"]
    for name in ("finetune", "gradient_ascent"):
        assert all(math.isnan(by[name][k]) for k in ("certified_epsilon", "residual_spent", "residual_budget"))
    with pytest.raises(ValueError, match="method_kwargs names methods that are not run"):
        evaluate.compare_methods(model, forget, digits38.X_test, digits38.y_test, methods=("none",),
                                 method_kwargs={"finetune": {"steps": 1}})
    with pytest.raises(ValueError, match="methods must be distinct"):
        evaluate.compare_methods(model, forget, digits38.X_test, digits38.y_test, methods=("none", "none"))


def test_unlearn_validation(model):
    with pytest.raises(ValueError, match="method"):
        evaluate.unlearn("forget", model, forget_idx=[1])
    with pytest.raises(ValueError, match="raw parameters"):
        evaluate.unlearn("none", np.zeros(3), forget_idx=[1])
    new_model, _ = cu.remove(model, 1)
    with pytest.raises(ValueError, match="already removed"):
        evaluate.unlearn("retrain", new_model, forget_idx=[1])
    with pytest.raises(ValueError, match="every retained row"):
        evaluate.unlearn("none", np.zeros(2), np.eye(2), np.array([1.0, -1.0]), [0, 1], loss="logistic", l2_reg=0.1)


def test_predict_accuracy_and_loss_helpers():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    w = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert evaluate.predict(w, X, loss="softmax").tolist() == [0, 1, 1]
    assert evaluate.accuracy(w, X, [0, 1, 0], loss="softmax") == pytest.approx(2 / 3)
    expected = np.mean(scipy.special.logsumexp(X @ w, axis=1) - (X @ w)[np.arange(3), [0, 1, 0]])
    assert evaluate.mean_loss(w, X, [0, 1, 0], loss="softmax") == pytest.approx(expected, rel=1e-12)
    assert math.isnan(evaluate.accuracy(w[:, 0], X, [0.0, 1.0, 0.0], loss="squared"))
    assert evaluate.predict(jnp.array([1.0, -1.0]), X, loss="logistic").tolist() == [1.0, -1.0, -1.0]
