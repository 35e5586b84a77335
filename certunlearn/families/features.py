"""The ``features`` family: certified unlearning of features and labels (Warnecke et al., NDSS 2023).

What one seed of one cell measures. A binary task (``dataset``, ``classes``) gets ``num_columns`` extra
*sensitive* columns that leak the label: the rows become ``[sqrt(1 - a^2) x, a s]`` with ``a = strength``
and ``s_j = y c_j / sqrt(num_columns)``, ``c_j = +1`` with probability ``agreement`` and ``-1`` otherwise
(independently per row and column), so rows keep ``||x|| <= 1``; the test rows get the same construction
from their own labels (the column leaks there too). A certified logistic model (:func:`certunlearn.fit`,
noise key ``jax.random.key(seed)``) is trained, then one modification request is served by
:func:`certunlearn.modify.modify`:

* ``kind="feature"``: the sensitive columns are set to 0 (:func:`certunlearn.modify.replace_feature`) in
  ``num_rows`` random rows (``None``: every row), e.g. a protected attribute that must not be used;
* ``kind="label"``: the model was trained with ``label_noise`` of the training labels flipped; ``num_rows``
  of the flipped labels (``None``: all of them) are corrected (:func:`certunlearn.modify.relabel`).

The reference is retraining from scratch on the modified data ``D'`` with the *same* noise (``cu.fit``, same
key: the minimiser the Newton step approaches) and, for scale, with a fresh noise draw.

Rows (one per seed and cell): ``rows_affected``, ``columns_affected``, ``n_train``, ``n_features``;
the certificate of the published model (``certified``: the Newton step was published; ``retrained``: the
budget would overflow and the request was served by a retrain with fresh noise), ``certified_epsilon``,
``residual_spent``, ``residual_budget``; the Newton step itself, published or not: ``step_bound`` (its
proven residual bound, solve error + remainder), ``step_residual_bound`` (the certificate it would give:
residual spent before + ``step_bound``), ``step_epsilon`` (the epsilon of that), ``step_exact_residual``
(``||grad L_b(w_step; D')||``), ``newton_distance`` (``||w_step - w_retrain||``); the published model:
``distance_to_retrain``; for scale: ``distance_before`` (the original model to ``w_retrain``) and
``noise_distance`` (``w_retrain`` to a retrain with fresh noise); test accuracy ``accuracy_before``,
``accuracy_unlearned`` (published), ``accuracy_retrained``; for ``kind="feature"`` (else NaN):
``sensitive_weight_*`` (``||w_S||`` over the sensitive columns; ``sensitive_weight_noise`` is
``||b_S|| / (lambda n)``, the value a model that never saw the columns has) and ``prediction_change_*`` /
``prediction_flips_*`` (mean ``|change of x w|`` and share of test predictions that flip when the
sensitive columns go from ``-a/sqrt(k)`` to ``+a/sqrt(k)``); ``step_seconds`` (the modification, warm),
``retrain_seconds`` (``cu.fit`` on ``D'`` from scratch, warm), ``train_seconds``. Every column but those
ending in ``_seconds`` is a deterministic function of ``(settings, seed)`` on one machine.

Sum convention (THEORY.md Sec. 1); rows ``||x|| <= 1``; the certificate's neighbouring relation is replace-m
(:mod:`certunlearn.modify`).

References:
  Warnecke, Pirch, Wressnegger, Rieck. Machine Unlearning of Features and Labels. NDSS 2023, arXiv:2108.11577.
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models. ICML 2020,
  arXiv:1911.03030.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certunlearn import api, data, figures, objective
from certunlearn.modify import (
    _resolve_solver,
    modification_step,
    relabel,
    replace_feature,
)

__all__ = ["DEFAULTS", "FAMILY", "KINDS", "make_data", "plot", "resolve_settings", "run_seed"]

FAMILY = "features"
KINDS = ("feature", "label")

#: Every setting of the family and its default (a config may override any of them, and nothing else).
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "classes": (3, 8),
    "n_train": None,
    "n_test": None,
    "data_seed": 0,
    # the sensitive columns
    "num_columns": 1,
    "strength": 0.5,
    "agreement": 0.9,
    # the request
    "kind": "feature",
    "num_rows": None,
    "label_noise": 0.1,
    # the certified model
    "l2_reg": 1e-2,
    "sigma": 1.0,
    "epsilon": 1.0,
    "delta": 1e-5,
    "calibration": "analytic",
    "bound": "data-dependent",
    "update": "guo",
    "solver": "auto",
}

_STYLE = {"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 7}


def _number(name, value, *, low, high=math.inf, allow_none=False, integer=False, open_low=False):
    if value is None and allow_none:
        return None
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value))
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        rel = ">" if open_low else ">="
        what = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} {rel} {low}{'' if high == math.inf else f' and <= {high}'}"
                         f"{' or None' if allow_none else ''}, got {value!r}")
    return int(value) if integer else float(value)


def resolve_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``settings``, validated.

    Raises:
      ValueError: an unknown setting (the message lists the known ones) or a value out of range.

    >>> resolve_settings({"kind": "label", "num_rows": 5})["num_rows"]
    5
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown {FAMILY} settings {unknown}; known settings: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **dict(settings)}
    if s["kind"] not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {s['kind']!r}")
    if s["classes"] is None or len(tuple(s["classes"])) != 2:
        raise ValueError(f"classes must be two class ids (a binary task), got {s['classes']!r}")
    s["classes"] = tuple(int(c) for c in s["classes"])
    for name in ("n_train", "n_test"):
        s[name] = _number(name, s[name], low=2, allow_none=True, integer=True)
    s["data_seed"] = _number("data_seed", s["data_seed"], low=0, integer=True)
    s["num_columns"] = _number("num_columns", s["num_columns"], low=1, integer=True)
    s["num_rows"] = _number("num_rows", s["num_rows"], low=1, allow_none=True, integer=True)
    s["strength"] = _number("strength", s["strength"], low=0.0, high=1.0, open_low=True)
    s["agreement"] = _number("agreement", s["agreement"], low=0.0, high=1.0)
    s["label_noise"] = _number("label_noise", s["label_noise"], low=0.0, high=0.5)
    for name in ("l2_reg", "sigma", "epsilon", "delta"):
        s[name] = _number(name, s[name], low=0.0, open_low=True)
    if s["kind"] == "label" and s["label_noise"] == 0:
        raise ValueError("kind='label' needs label_noise > 0 (the flipped labels it corrects), got 0")
    return s


def _sensitive_columns(y, *, num_columns, strength, agreement, rng):
    c = np.where(rng.random((len(y), num_columns)) < agreement, 1.0, -1.0)
    return strength * (np.asarray(y, np.float64)[:, None] * c) / math.sqrt(num_columns)


def make_data(s: Mapping[str, Any], seed: int):
    """The family's data: ``(X, y_clean, y_train, X_test, y_test, sensitive, noisy)`` (NumPy, float64).

    ``sensitive`` are the indices of the added columns (the last ``num_columns``); ``noisy`` the training
    rows whose label was flipped in ``y_train`` (empty for ``kind="feature"``). Randomness: the data set's
    subsample from ``data_seed``, everything else from ``numpy.random.default_rng([data_seed, seed])``.
    """
    ds = data.load(s["dataset"], classes=s["classes"], n_train=s["n_train"], n_test=s["n_test"], seed=s["data_seed"])
    rng = np.random.default_rng([s["data_seed"], seed])
    a, k = s["strength"], s["num_columns"]
    kw = dict(num_columns=k, strength=a, agreement=s["agreement"], rng=rng)
    scale = math.sqrt(1.0 - a * a)
    y_clean, y_test = np.asarray(ds.y_train, np.float64), np.asarray(ds.y_test, np.float64)
    X = np.hstack([scale * np.asarray(ds.X_train, np.float64), _sensitive_columns(y_clean, **kw)])
    X_test = np.hstack([scale * np.asarray(ds.X_test, np.float64), _sensitive_columns(y_test, **kw)])
    # ||x||^2 (1 - a^2) + a^2 <= 1 up to rounding; shrink the few rows rounding pushes past 1.
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X / np.maximum(norms, 1.0)
    y_train = y_clean.copy()
    noisy = np.zeros(0, np.int64)
    if s["kind"] == "label":
        noisy = np.sort(rng.choice(len(y_clean), size=max(1, round(s["label_noise"] * len(y_clean))), replace=False))
        y_train[noisy] *= -1.0
    sensitive = np.arange(X.shape[1] - k, X.shape[1])
    return X, y_clean, y_train, X_test, y_test, sensitive, noisy


def _fit(s, X, y, key):
    return api.fit(X, y, loss="logistic", l2_reg=s["l2_reg"], sigma=s["sigma"], epsilon=s["epsilon"],
                   delta=s["delta"], calibration=s["calibration"], bound=s["bound"], update=s["update"],
                   solver=s["solver"], key=key)


@functools.lru_cache(maxsize=4)
def _trained(frozen: tuple, seed: int):
    """The data and the trained model of a (settings without num_rows, seed): shared by the num_rows cells."""
    s = dict(frozen)
    out = make_data(s, seed)
    X, y_train = out[0], out[2]
    start = time.perf_counter()
    model = _fit(s, X, y_train, jax.random.key(seed))
    return out, model, time.perf_counter() - start


def _accuracy(params, X, y):
    return float(np.mean(np.where(X @ params >= 0, 1.0, -1.0) == y))


def _variation(params, X_test, sensitive, value):
    """Mean |change of the predictor| and share of flipped predictions, sensitive columns -value -> +value."""
    lo, hi = X_test.copy(), X_test.copy()
    lo[:, sensitive], hi[:, sensitive] = -value, value
    z_lo, z_hi = lo @ params, hi @ params
    return float(np.mean(np.abs(z_hi - z_lo))), float(np.mean((z_lo >= 0) != (z_hi >= 0)))


def _newton_step(model, X_new, y_new, rows):
    """The Newton step that :func:`certunlearn.modify.modify` takes on these arrays, published or not."""
    cfg, d = model.config, model._data
    bucket = max(8, 1 << (len(rows) - 1).bit_length())
    padded = np.zeros(bucket, np.int64)
    padded[: len(rows)] = rows
    weights = (np.arange(bucket) < len(rows)).astype(np.float64)
    step = modification_step(
        model.params, d.X64, d.y64, jnp.asarray(X_new), jnp.asarray(y_new), jnp.asarray(model.retained, jnp.float64),
        jnp.asarray(padded), jnp.asarray(weights), model.perturbation, cfg.l2_reg, cfg.cg_rtol,
        loss=cfg.loss, solver=_resolve_solver("auto", model), update=cfg.update, cg_maxiter=cfg.cg_maxiter,
    )
    return np.asarray(step.params, np.float64)


def _warm_up(request, model):
    """Runs ``request`` once on a copy that raises instead of retraining: compiles the step, trains nothing."""
    quiet = dataclasses.replace(model, config=dataclasses.replace(model.config, on_exhausted="raise"))
    try:
        request(quiet)
    except api.BudgetExhaustedError:
        pass


def run_seed(settings: Mapping[str, Any], seed: int) -> list[dict[str, Any]]:
    """One seed of one cell: one modification request against retraining (module docstring for the columns)."""
    s = resolve_settings(settings)
    frozen = tuple(sorted((k, v) for k, v in s.items() if k != "num_rows"))
    (X, y_clean, y_train, X_test, y_test, sensitive, noisy), model, train_seconds = _trained(frozen, seed)
    rng = np.random.default_rng([s["data_seed"], seed, 2])
    n = len(y_train)

    X_new, y_new = X.copy(), y_train.copy()
    if s["kind"] == "feature":
        pool = np.arange(n)
        rows = pool if s["num_rows"] is None or s["num_rows"] >= n else np.sort(rng.choice(pool, s["num_rows"], replace=False))
        X_new[np.ix_(rows, sensitive)] = 0.0

        def request(m):
            return replace_feature(m, sensitive, value=0.0, rows=rows)
    else:
        rows = noisy if s["num_rows"] is None or s["num_rows"] >= noisy.size else np.sort(
            rng.choice(noisy, s["num_rows"], replace=False))
        y_new[rows] = y_clean[rows]

        def request(m):
            return relabel(m, rows, y_new[rows])

    _warm_up(request, model)  # so that step_seconds is the warm cost
    unlearned, report = request(model)
    w_step = _newton_step(model, X_new, y_new, rows)

    start = time.perf_counter()
    retrained = _fit(s, X_new, y_new, jax.random.key(seed))
    retrain_seconds = time.perf_counter() - start
    fresh = _fit(s, X_new, y_new, jax.random.key(seed + 1_000_003))

    w0, w_unl, w_ret = (np.asarray(m.params, np.float64) for m in (model, unlearned, retrained))
    b = np.asarray(model.perturbation, np.float64)
    calib = model.calibration
    spent_before = model.ledger.residual_spent
    step_bound = report.solve_error + report.remainder
    if s["bound"] == "exact":
        step_total = report.exact_residual  # the residual itself (with its rounding margin)
    elif s["update"] == "guo":
        step_total = spent_before + step_bound  # Guo's accumulation
    else:
        step_total = step_bound  # the gradient step bounds the whole new residual
    step_exact = float(objective.gradient_norm(jnp.asarray(w_step), jnp.asarray(X_new), jnp.asarray(y_new),
                                               jnp.ones(n), jnp.asarray(b), loss="logistic", l2_reg=s["l2_reg"]))
    cert = unlearned.certificate()
    row = {
        "rows_affected": len(rows),
        "columns_affected": len(sensitive) if s["kind"] == "feature" else 0,
        "n_train": n,
        "n_features": int(X.shape[1]),
        "certified": not report.retrained,
        "retrained": bool(report.retrained),
        "certified_epsilon": cert.epsilon,
        "residual_spent": cert.residual_spent,
        "residual_budget": cert.residual_budget,
        "step_bound": step_bound,
        "step_residual_bound": step_total,
        "step_epsilon": calib.epsilon_spent(step_total) if math.isfinite(step_total) else math.inf,
        "step_exact_residual": step_exact,
        "newton_distance": float(np.linalg.norm(w_step - w_ret)),
        "distance_to_retrain": float(np.linalg.norm(w_unl - w_ret)),
        "distance_before": float(np.linalg.norm(w0 - w_ret)),
        "noise_distance": float(np.linalg.norm(np.asarray(fresh.params, np.float64) - w_ret)),
        "accuracy_before": _accuracy(w0, X_test, y_test),
        "accuracy_unlearned": _accuracy(w_unl, X_test, y_test),
        "accuracy_retrained": _accuracy(w_ret, X_test, y_test),
        "step_seconds": report.seconds,
        "retrain_seconds": retrain_seconds,
        "train_seconds": train_seconds,
    }
    value = s["strength"] / math.sqrt(s["num_columns"])
    for name, w in (("before", w0), ("unlearned", w_unl), ("retrained", w_ret)):
        feature = s["kind"] == "feature"
        change, flips = _variation(w, X_test, sensitive, value) if feature else (math.nan, math.nan)
        row[f"sensitive_weight_{name}"] = float(np.linalg.norm(w[sensitive])) if feature else math.nan
        row[f"prediction_change_{name}"] = change
        row[f"prediction_flips_{name}"] = flips
    row["sensitive_weight_noise"] = (float(np.linalg.norm(b[sensitive])) / (s["l2_reg"] * n)
                                     if s["kind"] == "feature" else math.nan)
    return [row]


# ----------------------------------------------------------------------------------------------------
# The figure.


def _band(ax, stats, x, *, label, color, linestyle="-", marker="o", size=3):
    stats = stats[np.isfinite(stats["center"])].sort_values(x)
    if stats.empty:
        return None
    (line,) = ax.plot(stats[x], stats["center"], linestyle=linestyle, marker=marker, markersize=size, color=color,
                      label=label)
    ax.fill_between(stats[x], stats["low"], stats["high"], color=color, alpha=0.18, linewidth=0)
    return line


def plot(table, *, method: str = "median_iqr"):
    """Six panels against the rows affected by one request (log x), one colour per (kind, l2_reg).

    (a) distance to the same-noise retrain: the Newton step (solid), the model before the request
    (dashed) and a fresh-noise retrain (dotted: the scale a certificate hides in); (b) the step's proven
    residual bound (solid) vs its exact residual (dotted), with the residual budget (grey); (c) weight
    norm on the sensitive columns after unlearning (solid), before (dashed), retrained (x) and pure noise
    (dotted); (d) share of test predictions that flip when the sensitive columns go from their negative to
    their positive value (unlearned, before, retrained); (e) test accuracy
    unlearned (solid), retrained (x), before (dashed); (f) seconds: the modification (solid) vs retraining
    from scratch (dashed). Hollow markers on solid curves: some seed's step overflowed the budget and was
    served by a retrain. Lines are the centre over seeds, bands the spread
    (:func:`certunlearn.figures.seed_stats`).
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    table = table.copy()
    for name in ("before", "unlearned", "retrained"):
        table[f"accuracy_{name}_pct"] = 100.0 * table[f"accuracy_{name}"]
        table[f"prediction_flips_{name}_pct"] = 100.0 * table[f"prediction_flips_{name}"]
    groups = [(key, part) for key, part in table.groupby(["kind", "l2_reg"], sort=True)]
    colors = {key: f"C{i}" for i, (key, _) in enumerate(groups)}
    x = "rows_affected"
    with rc_context(_STYLE):
        fig = Figure(figsize=(12.0, 6.4), layout="constrained")
        axes = fig.subplots(2, 3).ravel()
    n_seeds = []

    def draw(ax, part, column, *, label, color, linestyle="-", marker="o", hollow=False, size=3):
        stats = figures.seed_stats(part, [x], column, method=method)
        if ax.get_yscale() == "log":
            stats = stats[stats["center"] > 0]
        n_seeds.extend(stats["n_seeds"])
        line = _band(ax, stats, x, label=label, color=color, linestyle=linestyle, marker=marker, size=size)
        if line is not None and hollow:
            over = part.groupby(x)["retrained"].any()
            over = stats[stats[x].map(over).fillna(False).astype(bool)]
            ax.plot(over[x], over["center"], "o", markersize=7, markerfacecolor="white", color=color, zorder=3)

    for ax, scale in zip(axes, ("log", "log", "linear", "linear", "linear", "log")):
        ax.set_xscale("log")
        ax.set_yscale(scale)
    for key, part in groups:
        kind, l2_reg = key
        c = colors[key]
        tag = f"{kind}, \u03bb = {l2_reg:g}"
        draw(axes[0], part, "newton_distance", label=tag, color=c, hollow=True)
        draw(axes[0], part, "distance_before", label=None, color=c, linestyle="--", marker="")
        draw(axes[0], part, "noise_distance", label=None, color=c, linestyle=":", marker="")
        draw(axes[1], part, "step_residual_bound", label=None, color=c, hollow=True)
        draw(axes[1], part, "step_exact_residual", label=None, color=c, linestyle=":", marker="")
        if kind == "feature":
            draw(axes[2], part, "sensitive_weight_unlearned", label=None, color=c, hollow=True)
            draw(axes[2], part, "sensitive_weight_before", label=None, color=c, linestyle="--", marker="")
            draw(axes[2], part, "sensitive_weight_retrained", label=None, color=c, linestyle="", marker="x", size=6)
            draw(axes[2], part, "sensitive_weight_noise", label=None, color=c, linestyle=":", marker="")
            draw(axes[3], part, "prediction_flips_unlearned_pct", label=None, color=c, hollow=True)
            draw(axes[3], part, "prediction_flips_before_pct", label=None, color=c, linestyle="--", marker="")
            draw(axes[3], part, "prediction_flips_retrained_pct", label=None, color=c, linestyle="", marker="x", size=6)
        draw(axes[4], part, "accuracy_unlearned_pct", label=None, color=c, hollow=True)
        draw(axes[4], part, "accuracy_retrained_pct", label=None, color=c, linestyle="", marker="x", size=6)
        draw(axes[4], part, "accuracy_before_pct", label=None, color=c, linestyle="--", marker="")
        draw(axes[5], part, "step_seconds", label=None, color=c, hollow=True)
        draw(axes[5], part, "retrain_seconds", label=None, color=c, linestyle="--", marker="")
    for budget in sorted(table["residual_budget"].unique()):
        axes[1].axhline(budget, color="grey", linewidth=1, label="residual budget")
    titles = [
        ("(a) \u2016w \u2212 w_retrain\u2016: step (\u2014), before (--), fresh noise (\u00b7\u00b7)", "distance"),
        ("(b) residual: proven bound (\u2014) vs exact (\u00b7\u00b7)", "\u2016\u2207L_b(w; D\u2032)\u2016"),
        ("(c) \u2016w_S\u2016 on the sensitive columns (--: before, \u00d7: retrained, \u00b7\u00b7: noise)", "weight norm"),
        ("(d) test predictions that flip when the sensitive columns vary", "flipped (%)"),
        ("(e) test accuracy (\u00d7: retrained, --: before)", "accuracy (%)"),
        ("(f) seconds: modification (\u2014) vs retraining (--)", "seconds"),
    ]
    for ax, (title, ylabel) in zip(axes, titles):
        ax.set_title(title, fontsize=7, loc="left")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("rows affected by the request")
        ax.grid(True, alpha=0.3)
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncols=len(handles) or 1)
    first = table.iloc[0]
    fig.suptitle(
        f"Certified unlearning of features and labels: {first['dataset']} {first['classes']}, "
        f"\u03b5 = {first['epsilon']:g}, \u03c3 = {first['sigma']:g}; {figures.spread_label(method, n_seeds)}; "
        "\u25cb: step overflowed the budget, served by a retrain",
        fontsize=9,
    )
    return fig, axes
