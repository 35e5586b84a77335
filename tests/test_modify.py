"""Certified feature and label modification against float64 NumPy references and retraining.

Every reference here is written in this file in NumPy/SciPy (no certunlearn maths): the sum-convention
gradient and Hessian, Newton training, and the one Newton step of Warnecke et al. on the modified data.
Tolerances are stated where they are used; ``SLACK`` absorbs the float64 rounding of the NumPy
reference itself (its residuals are sums of n terms of size ~1).
"""

import copy
import dataclasses
import functools
import math
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import certunlearn as cu
from certunlearn import figures, runner
from certunlearn.families import features as family
from certunlearn.modify import (
    modification_terms,
    modified_data_norm_bound,
    modify,
    relabel,
    replace_feature,
    training_data,
    worst_case_modification_bound,
)

SLACK = 1e-12


# ----------------------------------------------------------------------------------------------------
# Float64 NumPy references (sum convention: L_b(w) = sum_i l(x_i w, y_i) + lam n/2 ||w||^2 + <b, w>).


def ref_grad(w, X, y, mask, b, lam, loss):
    z = X @ w
    if loss == "logistic":
        r = -y * scipy.special.expit(-y * z)
    elif loss == "softmax":
        r = scipy.special.softmax(z, axis=1)
        r[np.arange(len(y)), y] -= 1.0
    else:
        r = z - y
    r = r * (mask[:, None] if r.ndim == 2 else mask)
    return X.T @ r + lam * mask.sum() * w + b


def ref_hess(w, X, mask, lam, loss):
    z = X @ w
    p = w.size
    if loss == "softmax":
        H = np.zeros((p, p))
        for i in np.flatnonzero(mask):
            pi = scipy.special.softmax(z[i])
            H += np.kron(np.outer(X[i], X[i]), np.diag(pi) - np.outer(pi, pi))
    else:
        s = scipy.special.expit(z) * scipy.special.expit(-z) if loss == "logistic" else np.ones_like(z)
        H = (X * (mask * s)[:, None]).T @ X
    return H + lam * mask.sum() * np.eye(p)


def ref_train(X, y, mask, b, lam, loss, shape, tol=1e-13):
    w = np.zeros(shape)
    for _ in range(100):
        g = ref_grad(w, X, y, mask, b, lam, loss)
        if np.linalg.norm(g) < tol:
            break
        w = w - scipy.linalg.solve(ref_hess(w, X, mask, lam, loss), g.ravel(), assume_a="pos").reshape(shape)
    return w


def ref_modification_step(w, X_old, y_old, X_new, y_new, mask, rows, b, lam, loss, update):
    """Warnecke et al.'s second-order update, Hessian on the modified rows: w + H'^{-1} Delta."""
    if update == "guo":
        sel = np.zeros(len(mask))
        sel[rows] = 1.0
        zero = np.zeros_like(w)
        rhs = ref_grad(w, X_old, y_old, sel, zero, 0.0, loss) - ref_grad(w, X_new, y_new, sel, zero, 0.0, loss)
    else:
        rhs = -ref_grad(w, X_new, y_new, mask, b, lam, loss)
    H = ref_hess(w, X_new, mask, lam, loss)
    return w + scipy.linalg.solve(H, rhs.ravel(), assume_a="pos").reshape(w.shape)


def _np(a):
    return np.asarray(a, dtype=np.float64)


def _data(loss, n=80, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X *= rng.uniform(0.4, 1.0, size=(n, 1))
    teacher = rng.normal(size=(d, k))
    if loss == "logistic":
        y = np.where(X @ teacher[:, 0] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
    elif loss == "softmax":
        y = np.argmax(X @ teacher + 0.3 * rng.normal(size=(n, k)), axis=1).astype(np.int32)
    else:
        y = X @ teacher[:, 0] + 0.1 * rng.normal(size=n)
    return X, y


@functools.cache
def _model(loss, bound="data-dependent", update="guo", sigma=50.0, solver="auto", dtype="float64", lam=0.05,
           on_exhausted="retrain", seed=1):
    """A trained model (cached: models are immutable). sigma=50 leaves a large budget (no retrain)."""
    X, y = _data(loss)
    return cu.fit(X, y, loss=loss, l2_reg=lam, epsilon=1.0, delta=1e-4, sigma=sigma, bound=bound, update=update,
                  solver=solver, dtype=dtype, on_exhausted=on_exhausted, key=jax.random.key(seed))


def _new_rows(rng, X_rows, scale):
    """Rows moved by a random perturbation, kept inside the unit ball."""
    Xn = X_rows + scale * rng.normal(size=X_rows.shape)
    norms = np.linalg.norm(Xn, axis=1, keepdims=True)
    return Xn / np.maximum(norms, 1.0)


def _new_labels(rng, loss, y_rows):
    if loss == "logistic":
        return -y_rows
    if loss == "softmax":
        return ((y_rows + rng.integers(1, 3, size=y_rows.shape)) % 3).astype(np.int32)
    return y_rows + rng.normal(size=y_rows.shape)


# ----------------------------------------------------------------------------------------------------
# The update.


@pytest.mark.parametrize("loss, update", [("logistic", "guo"), ("softmax", "guo"), ("logistic", "gradient")])
def test_step_equals_numpy_newton_step_and_lands_near_retraining(loss, update):
    model = _model(loss, update=update)
    X, y = training_data(model)
    mask = np.ones(len(y))
    lam = 0.05
    rng = np.random.default_rng(7)
    rows = np.array([3, 11, 40])
    X_rows, y_rows = _new_rows(rng, X[rows], 0.3), _new_labels(rng, loss, y[rows])
    new_model, report = modify(model, rows, X_new=X_rows, y_new=y_rows)
    assert not report.retrained and report.converged and report.features_changed and report.labels_changed

    X2, y2 = X.copy(), y.copy()
    X2[rows], y2[rows] = X_rows, y_rows
    Xm, ym = training_data(new_model)
    np.testing.assert_array_equal(Xm, X2)
    np.testing.assert_array_equal(ym, y2)

    w, b = _np(model.params), _np(model.perturbation)
    expected = ref_modification_step(w, X, y, X2, y2, mask, rows, b, lam, loss, update)
    np.testing.assert_allclose(_np(new_model.params), expected, rtol=1e-10, atol=1e-12)

    # Close to retraining on the modified data with the same noise: much closer than two noise draws.
    retrained = ref_train(X2, y2, mask, b, lam, loss, w.shape)
    other = ref_train(X2, y2, mask, b + 50.0 * np.random.default_rng(3).normal(size=b.shape), lam, loss, w.shape)
    gap = np.linalg.norm(_np(new_model.params) - retrained)
    noise = np.linalg.norm(retrained - other)
    assert gap < 1e-2 * noise, (gap, noise)
    assert gap < np.linalg.norm(w - retrained) / 10  # the step did most of the way

    # The certificate covers the exact residual (NumPy), and the ledger records a modification.
    exact = np.linalg.norm(ref_grad(_np(new_model.params), X2, y2, mask, b, lam, loss))
    assert exact <= new_model.certificate().residual_spent + SLACK
    assert new_model.ledger.events[-1].kind == "modification" and new_model.ledger.events[-1].num_removed == 3
    assert new_model.ledger.modifications == 3 and new_model.certificate().modifications == 3
    assert "3 rows modified" in str(new_model.certificate()) and new_model.ledger.removals == model.ledger.removals
    assert new_model.certificate().removals == 0 and new_model.n_retained == len(y)


def test_ridge_modification_equals_closed_form_retrain():
    model = _model("squared", sigma=0.5)
    X, y = training_data(model)
    n, d = X.shape
    lam = 0.05
    b = _np(model.perturbation)

    def ridge(X_, y_, mask):
        Xm, ym = X_[mask], y_[mask]
        return np.linalg.solve(Xm.T @ Xm + lam * mask.sum() * np.eye(d), Xm.T @ ym - b)

    X2, y2 = X.copy(), y.copy()
    X2[:, 1] = 0.0  # unlearn column 1 everywhere
    y2[[4, 9]] = [2.0, -1.5]
    new_model, report = replace_feature(model, 1)
    new_model, report2 = relabel(new_model, [4, 9], [2.0, -1.5])
    expected = ridge(X2, y2, np.ones(n, bool))
    assert np.linalg.norm(_np(new_model.params) - expected) <= 1e-9 * np.linalg.norm(expected)
    assert report.remainder == 0.0 and report2.remainder == 0.0  # gamma = 0: exact Newton step
    assert abs(float(new_model.params[1]) + b[1] / (lam * n)) < 1e-12  # pure noise on the zeroed column
    np.testing.assert_array_equal(training_data(new_model)[0], X2)


# ----------------------------------------------------------------------------------------------------
# Soundness of every bound (property test).


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    loss=st.sampled_from(["logistic", "softmax"]),
    seed=st.integers(0, 2**16),
    num_rows=st.integers(1, 6),
    scale=st.sampled_from([0.0, 0.05, 0.5, 2.0]),
    flip=st.booleans(),
)
def test_each_bound_covers_the_exact_residual(loss, seed, num_rows, scale, flip):
    model = _model(loss)  # bound="data-dependent", Guo's accumulation
    X, y = training_data(model)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(y), size=num_rows, replace=False)
    X_rows = _new_rows(rng, X[rows], scale)
    y_rows = _new_labels(rng, loss, y[rows]) if flip else y[rows]
    new_model, report = modify(model, rows, X_new=X_rows, y_new=y_rows)
    assert not report.retrained

    X2, y2 = X.copy(), y.copy()
    X2[rows], y2[rows] = X_rows, y_rows
    mask, lam, b = np.ones(len(y)), 0.05, _np(model.perturbation)
    r_prev = ref_grad(_np(model.params), X, y, mask, b, lam, loss)
    r_new = ref_grad(_np(new_model.params), X2, y2, mask, b, lam, loss)
    exact = np.linalg.norm(r_new)
    cert = new_model.certificate()
    assert exact <= cert.residual_spent + SLACK
    assert cert.residual_spent == pytest.approx(model.certificate().residual_spent + report.residual_bound)
    # The step's own bound covers the residual it adds: r_new - r_prev = (H'u - Delta) + R(u).
    assert np.linalg.norm(r_new - r_prev) <= report.solve_error + report.remainder + SLACK
    assert report.data_norm >= np.linalg.norm(X2, 2)

    # The other two bounds, on the same published step (the function modify() certifies with).
    pad = np.zeros(8, np.int64)
    pad[:num_rows] = rows
    weights = (np.arange(8) < num_rows).astype(float)
    args = (model.params, new_model.params, X, y, X2, y2, mask, pad, weights, b, lam, report.data_norm, 1.0)
    worst = modification_terms(*args, loss=loss, update="guo", bound="worst-case")
    assert np.linalg.norm(r_new - r_prev) <= float(worst.solve_error + worst.remainder) + SLACK
    assert report.worst_case_apriori >= float(worst.remainder) * (1 - 1e-12)
    exact_terms = modification_terms(*args, loss=loss, update="guo", bound="exact")
    assert exact - SLACK <= float(exact_terms.exact_residual) <= exact + 1e-9  # + a float64 rounding margin


def test_data_norm_bound_stays_an_upper_bound_across_modifications():
    model = _model("logistic")
    rng = np.random.default_rng(0)
    for _ in range(3):
        X, y = training_data(model)
        rows = rng.choice(len(y), size=8, replace=False)
        model, report = modify(model, rows, X_new=_new_rows(rng, X[rows], 1.0))
        X2, _ = training_data(model)
        spectral = np.linalg.svd(X2, compute_uv=False)[0]
        assert spectral <= report.data_norm <= np.linalg.norm(X2) * (1 + 1e-12)
    # The standalone function: the triangle-inequality form when no full matrix is given.
    X_old, X_new = np.eye(2), np.array([[0.6, 0.8], [0.0, 1.0]])
    bound = modified_data_norm_bound(1.0, X_old[:1], X_new[:1])
    assert bound >= 1.0 + np.linalg.norm(X_new[0] - X_old[0]) and bound >= np.linalg.norm(X_new, 2)


def test_worst_case_apriori_formula():
    gamma = cu.losses.get_loss("logistic").gamma
    m, n, lam = 3, 200, 0.01
    expected = 2 * gamma * m**2 * 1.0 / (lam**2 * n)  # 2 gamma rho^3 m^2 C^2 / (lambda^2 n), rho = C = 1
    assert worst_case_modification_bound(m, n, l2_reg=lam, loss="logistic") == pytest.approx(expected, rel=1e-12)
    assert worst_case_modification_bound(m, n, l2_reg=lam, loss="squared") == 0.0
    soft = worst_case_modification_bound(m, n, l2_reg=lam, loss="softmax")
    assert soft == pytest.approx(2 * (1 / math.sqrt(2)) * m**2 * 2.0 / (lam**2 * n), rel=1e-12)


# ----------------------------------------------------------------------------------------------------
# Budget, retraining, the curvature cache, float32.


def test_budget_exhausted_raises_and_leaves_model_unchanged():
    model = _model("logistic", sigma=1e-3, on_exhausted="raise")
    _, y = training_data(model)
    params = np.array(model.params)
    rows = np.arange(8)
    with pytest.raises(cu.BudgetExhaustedError, match="cannot certify modifying 8 rows"):
        modify(model, rows, y_new=-y[rows])
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(training_data(model)[1], y)
    assert model.ledger.events[-1].kind == "train"


def test_budget_exhausted_retrains_on_modified_data_with_fresh_noise():
    model = _model("logistic", sigma=1e-3)
    X, y = training_data(model)
    rows = np.arange(8)
    new_model, report = modify(model, rows, y_new=-y[rows])
    assert report.retrained and report.retrain_seconds > 0
    assert not np.array_equal(_np(new_model.perturbation), _np(model.perturbation))
    y2 = y.copy()
    y2[rows] = -y[rows]
    b = _np(new_model.perturbation)
    expected = ref_train(X, y2, np.ones(len(y)), b, 0.05, "logistic", (X.shape[1],))
    np.testing.assert_allclose(_np(new_model.params), expected, atol=1e-8)
    cert = new_model.certificate()
    assert cert.retrains == 1 and cert.residual_spent == report.residual_bound == new_model.training_residual
    assert new_model.exact_residual() <= cert.residual_spent * (1 + 1e-6) + SLACK
    # The next removal trains and bounds on the modified labels as well.
    after, _ = cu.remove(new_model, [30])
    mask = np.ones(len(y))
    mask[30] = 0.0
    r = np.linalg.norm(ref_grad(_np(after.params), X, y2, mask, _np(after.perturbation), 0.05, "logistic"))
    assert r <= after.certificate().residual_spent + SLACK


def test_cache_is_dropped_and_removal_after_modification_matches_numpy():
    model = _model("logistic", solver="cached")
    model, _ = cu.remove(model, [1])
    assert model._cache is not None
    X, y = training_data(model)
    new_model, report = replace_feature(model, [0, 2], rows=[5, 6, 7])
    assert new_model._cache is None and report.solver == "cholesky"
    assert model._cache is not None  # the old model keeps its own
    after, _ = cu.remove(new_model, [9])
    X2 = X.copy()
    X2[np.ix_([5, 6, 7], [0, 2])] = 0.0
    np.testing.assert_array_equal(training_data(new_model)[0], X2)
    mask = new_model.retained.astype(float)
    mask[9] = 0.0
    # Guo's removal step on the MODIFIED data (the cache is rebuilt at the current w: an exact Newton step).
    w = _np(new_model.params)
    removed = np.zeros(len(y))
    removed[9] = 1.0
    delta = ref_grad(w, X2, y, removed, np.zeros(5), 0.05, "logistic")
    expected = w + np.linalg.solve(ref_hess(w, X2, mask, 0.05, "logistic"), delta)
    np.testing.assert_allclose(_np(after.params), expected, rtol=1e-9, atol=1e-10)
    r = np.linalg.norm(ref_grad(_np(after.params), X2, y, mask, _np(after.perturbation), 0.05, "logistic"))
    assert r <= after.certificate().residual_spent + SLACK


def test_cg_solver_matches_cholesky():
    model = _model("softmax")
    X, _ = training_data(model)
    rows = np.array([2, 3])
    X_rows = _new_rows(np.random.default_rng(1), X[rows], 0.2)
    a, ra = modify(model, rows, X_new=X_rows, solver="cholesky")
    b, rb = modify(model, rows, X_new=X_rows, solver="cg")
    assert ra.solver == "cholesky" and rb.solver == "cg" and rb.solver_steps > 1
    np.testing.assert_allclose(_np(a.params), _np(b.params), atol=1e-9)


def test_nothing_is_certified_from_a_solve_that_did_not_converge():
    model = _model("softmax")
    X, y = training_data(model)
    starved = dataclasses.replace(model, config=dataclasses.replace(model.config, cg_maxiter=1, on_exhausted="raise"))
    with pytest.raises(cu.BudgetExhaustedError, match="the Newton solve did not converge"):
        modify(starved, [2, 3], X_new=X[[2, 3]] * 0.5, solver="cg")
    retrain = dataclasses.replace(starved, config=dataclasses.replace(starved.config, on_exhausted="retrain"))
    new_model, report = modify(retrain, [2, 3], X_new=X[[2, 3]] * 0.5, solver="cg")
    assert report.retrained and not report.converged and new_model.certificate().retrains == 1
    X2 = X.copy()
    X2[[2, 3]] *= 0.5
    r = np.linalg.norm(ref_grad(_np(new_model.params), X2, y, np.ones(len(y)), _np(new_model.perturbation), 0.05,
                                "softmax"))
    assert r <= new_model.certificate().residual_spent + SLACK


def test_float32_model_is_certified_in_float64():
    model = _model("logistic", dtype="float32", sigma=50.0)
    X, y = training_data(model)
    rows = np.array([0, 1, 2, 3])
    new_model, report = modify(model, rows, X_new=_new_rows(np.random.default_rng(2), X[rows], 0.3))
    assert not report.retrained and new_model.params.dtype == np.float32
    X2, y2 = training_data(new_model)
    r = np.linalg.norm(ref_grad(_np(new_model.params), X2, y2, np.ones(len(y)), _np(new_model.perturbation), 0.05,
                                "logistic"))
    assert r <= new_model.certificate().residual_spent + SLACK


# ----------------------------------------------------------------------------------------------------
# The examples: a sensitive column, noisy labels.


def test_sensitive_column_is_unlearned_like_retraining():
    rng = np.random.default_rng(0)
    n, d, lam = 80, 5, 0.05
    X = rng.normal(size=(n, d))
    y = np.where(X[:, :3] @ np.array([1.0, -1.0, 0.5]) + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
    X[:, -1] = 2.0 * y + 0.3 * rng.normal(size=n)  # a sensitive column that leaks the label
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    model = cu.fit(X, y, l2_reg=lam, sigma=2.0, epsilon=1.0, delta=1e-5, key=jax.random.key(4))
    new_model, report = replace_feature(model, d - 1)
    assert not report.retrained
    b = _np(new_model.perturbation)
    X2 = X.copy()
    X2[:, -1] = 0.0
    retrained = ref_train(X2, y, np.ones(n), b, lam, "logistic", (d,))
    w_old, w_new = _np(model.params), _np(new_model.params)
    # The column's weight drops from a large value to its pure-noise value -b_j / (lambda n), as retraining.
    assert abs(w_old[-1]) > 5 * abs(b[-1] / (lam * n))
    # Exactly: the zeroed coordinate decouples and is quadratic, so lambda n w_j + b_j = (training residual)_j.
    assert abs(w_new[-1] + b[-1] / (lam * n)) <= model.training_residual / (lam * n) + 1e-12
    # One Newton step covers most of the way, and lands far closer than another noise draw would.
    gap = np.linalg.norm(w_new - retrained)
    other = ref_train(X2, y, np.ones(n), 2.0 * rng.normal(size=d), lam, "logistic", (d,))
    assert gap < 0.02 * np.linalg.norm(w_old - retrained) and gap < 0.1 * np.linalg.norm(other - retrained)
    # Varying the column now moves the predictor by |w_j| only: as little as for the retrained model.
    X_lo, X_hi = X.copy(), X.copy()
    X_lo[:, -1], X_hi[:, -1] = -0.5, 0.5
    change = lambda m: np.abs(np.asarray(m.decision_function(X_hi)) - np.asarray(m.decision_function(X_lo))).max()
    assert change(new_model) == pytest.approx(abs(retrained[-1]), rel=1e-6)
    assert change(new_model) < 0.25 * change(model)
    assert new_model.exact_residual() <= new_model.certificate().residual_spent


def test_noisy_labels_are_corrected_like_retraining():
    X, y_clean = _data("logistic", seed=3)
    rng = np.random.default_rng(5)
    noisy = rng.choice(80, size=8, replace=False)
    y = y_clean.copy()
    y[noisy] *= -1
    model = cu.fit(X, y, l2_reg=0.05, sigma=5.0, epsilon=1.0, delta=1e-4, key=jax.random.key(2))
    new_model, report = relabel(model, noisy, y_clean[noisy])
    assert not report.retrained and not report.features_changed and report.labels_changed
    b = _np(new_model.perturbation)
    retrained = ref_train(X, y_clean, np.ones(80), b, 0.05, "logistic", (5,))
    before = np.linalg.norm(_np(model.params) - retrained)
    assert np.linalg.norm(_np(new_model.params) - retrained) < 1e-2 * before


# ----------------------------------------------------------------------------------------------------
# Degenerate and bad input.


def test_zero_rows_cost_nothing():
    model = _model("logistic")
    same, report = modify(model, [], y_new=[])
    assert same is model and report.residual_bound == 0.0 and not report.retrained


def test_inputs_and_original_model_are_unchanged():
    model = _model("softmax")
    X, _ = training_data(model)
    params, X_data, y_data = np.array(model.params), np.array(model._data.X64), np.array(model._data.y)
    ledger = copy.deepcopy(model.ledger)
    rows = np.array([5, 1])
    X_rows = _new_rows(np.random.default_rng(0), X[rows], 0.4)
    y_rows = np.array([0, 2], np.int32)
    X_rows_copy, y_rows_copy, rows_copy = X_rows.copy(), y_rows.copy(), rows.copy()
    modify(model, rows, X_new=X_rows, y_new=y_rows)
    replace_feature(model, 0, rows=rows)
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model._data.X64, X_data)
    np.testing.assert_array_equal(model._data.y, y_data)
    np.testing.assert_array_equal(X_rows, X_rows_copy)
    np.testing.assert_array_equal(y_rows, y_rows_copy)
    np.testing.assert_array_equal(rows, rows_copy)
    assert model.ledger == ledger and model._data.X64 is not None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, X, y: modify(m, [80], y_new=[1.0]), r"indices must lie in \[0, 80\); got \[80\]"),
        (lambda m, X, y: modify(m, [2, 2], y_new=[1.0, 1.0]), "indices must be distinct"),
        (lambda m, X, y: modify(m, [0.5], y_new=[1.0]), "indices must be integer"),
        (lambda m, X, y: modify(m, [1]), "give X_new"),
        (lambda m, X, y: modify(m, [1], X_new=X[:2]), r"X_new must have shape \(1, 5\)"),
        (lambda m, X, y: modify(m, [1], X_new=np.full((1, 5), np.nan)), "X_new must be finite"),
        (lambda m, X, y: modify(m, [1], X_new=np.ones((1, 5))), "X_new rows must have L2 norm <= 1"),
        (lambda m, X, y: modify(m, [1], y_new=[0.0]), "y_new must hold labels -1 and \\+1"),
        (lambda m, X, y: modify(m, [1, 2], y_new=[1.0]), r"y_new must have shape \(2,\)"),
        (lambda m, X, y: modify(m, [1], y_new=[1.0], solver="lu"), "solver must be one of"),
        (lambda m, X, y: replace_feature(m, 5), r"columns must lie in \[0, 5\)"),
        (lambda m, X, y: replace_feature(m, [1, 1]), "columns must be distinct"),
        (lambda m, X, y: replace_feature(m, 0, value=float("inf")), "value must be a finite number"),
        (lambda m, X, y: replace_feature(m, 0, value=1.0), "value=1.0 makes .* rows longer than 1"),
        (lambda m, X, y: replace_feature(m, 0, rows=[99]), r"rows must lie in \[0, 80\)"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    model = _model("logistic")
    X, y = training_data(model)
    params = np.array(model.params)
    with pytest.raises(ValueError, match=match):
        call(model, X, y)
    np.testing.assert_array_equal(model.params, params)


def test_removed_rows_cannot_be_modified_and_softmax_labels_are_checked():
    model, _ = cu.remove(_model("logistic"), [4])
    with pytest.raises(ValueError, match=r"indices \[4\] were removed from the model"):
        relabel(model, [4], [1.0])
    with pytest.raises(ValueError, match=r"y_new must hold integer class labels in 0..2"):
        relabel(_model("softmax"), [0], [3])


# ----------------------------------------------------------------------------------------------------
# The ``features`` experiment family.

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "features.py"


def test_features_family_smoke_sweep_and_figure(tmp_path):
    runner.sweep(str(CONFIG), smoke=True, out=tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 8 and (table["status"] == "ok").all() and set(table["kind"]) == {"feature", "label"}
    certified = table[table["certified"]]
    assert len(certified) >= 4
    # A published step: its certificate covers its exact residual, and it lands next to the retrain.
    assert (certified["step_residual_bound"] >= certified["step_exact_residual"]).all()
    assert (certified["distance_to_retrain"] == certified["newton_distance"]).all()
    assert (certified["newton_distance"] < 0.05 * certified["noise_distance"]).all()
    assert (certified["certified_epsilon"] <= certified["epsilon"] * (1 + 1e-9)).all()
    retrained = table[table["retrained"]]
    assert (retrained["step_residual_bound"] > retrained["residual_budget"]).all()
    # Zeroing the sensitive column in every row: its weight and its effect on predictions go.
    everywhere = table[(table["kind"] == "feature") & table["num_rows"].isna()]
    assert (everywhere["sensitive_weight_unlearned"] < 0.2 * everywhere["sensitive_weight_before"]).all()
    assert (everywhere["prediction_flips_unlearned"] < 0.2 * everywhere["prediction_flips_before"]).all()
    paths = figures.make_figure("features", tmp_path, tmp_path / "figures")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_features_family_numbers_match_numpy_and_are_deterministic():
    config = runner.load_config(str(CONFIG), smoke=True)[0].to_dict()
    settings = {k: v for k, v in config.items() if k not in ("family", "task", "seeds")}
    settings.update(kind="feature", num_rows=None)
    family._trained.cache_clear()
    first = family.run_seed(settings, 0)[0]
    family._trained.cache_clear()
    second = family.run_seed(settings, 0)[0]
    for name, value in first.items():
        if not name.endswith("_seconds"):
            assert value == second[name] or (math.isnan(value) and math.isnan(second[name])), name

    # Independent float64 NumPy: the same-noise retrain on D' and the Newton step towards it.
    s = family.resolve_settings(settings)
    (X, _, y, X_test, y_test, sensitive, _), model, _ = family._trained(
        tuple(sorted((k, v) for k, v in s.items() if k != "num_rows")), 0)
    b, lam, n = _np(model.perturbation), s["l2_reg"], len(y)
    X2 = X.copy()
    X2[:, sensitive] = 0.0
    mask = np.ones(n)
    w_ret = ref_train(X2, y, mask, b, lam, "logistic", b.shape)
    w_step = ref_modification_step(_np(model.params), X, y, X2, y, mask, np.arange(n), b, lam, "logistic", "guo")
    assert first["newton_distance"] == pytest.approx(np.linalg.norm(w_step - w_ret), rel=1e-5, abs=1e-9)
    assert first["distance_before"] == pytest.approx(np.linalg.norm(_np(model.params) - w_ret), rel=1e-6)
    assert first["accuracy_retrained"] == pytest.approx(np.mean(np.sign(X_test @ w_ret) == y_test))
    assert first["sensitive_weight_noise"] == pytest.approx(np.linalg.norm(b[sensitive]) / (lam * n), rel=1e-12)
    assert first["sensitive_weight_retrained"] == pytest.approx(np.linalg.norm(w_ret[sensitive]), rel=1e-6)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"colour": 1}, r"unknown features settings \['colour'\]"),
        ({"kind": "rows"}, "kind must be one of"),
        ({"kind": "label", "label_noise": 0.0}, "kind='label' needs label_noise > 0"),
        ({"num_rows": 0}, "num_rows must be an int >= 1 or None"),
        ({"strength": 1.5}, "strength must be a finite number > 0.0 and <= 1.0"),
        ({"classes": (1, 2, 3)}, "classes must be two class ids"),
    ],
)
def test_features_family_rejects_bad_settings(settings, match):
    with pytest.raises(ValueError, match=match):
        family.resolve_settings(settings)
