"""The ``baselines`` family: certified Newton removal against the usual unlearning baselines.

What one seed of one cell measures. A certified model (:func:`certunlearn.fit`, noise key
``jax.random.key(seed)``) is trained on the training rows; for each ``m`` in ``forget_sizes`` the first ``m``
rows of a seeded removal order are forgotten in *one* request (remove-m, THEORY.md Sec. 2) by each method of
:data:`certunlearn.evaluate.METHODS`:

* ``newton``: :func:`certunlearn.remove` (one Newton step, certified; retrains with fresh noise when the step
  would overflow the residual budget: then ``retrained`` is True);
* ``retrain``: the perturbed objective re-fitted on the retained rows with the *same* noise ``b``, the exact
  oracle that every other method is compared with (so its distances are 0 by construction);
* ``finetune``: ``finetune_steps`` full-batch gradient steps on the retained rows' mean objective;
* ``gradient_ascent``: ``ascent_steps`` steps ascending the forgotten rows' mean loss ("reverse gradient");
* ``none``: the trained model unchanged.

The forget sets of one seed are nested (prefixes of one order), so the curves against ``m`` are paired.
Removal orders: ``"random"`` (a seeded permutation of the training rows) or ``"class"`` (the rows of
``target_class``, an original class id, in a seeded order: a class-targeted deletion request).

Rows: one per (``num_forget``, ``method``), with every column of
:class:`certunlearn.evaluate.UnlearningMetrics` (``param_distance`` ``||w - w_retrain||``,
``relative_param_distance``, ``prediction_disagreement`` with the retrained model on the test rows,
``max_logit_difference``, ``accuracy_forget/retain/test``, ``loss_forget/retain/test``, ``exact_residual``
``||grad L_b(w; D')||`` with the model's noise, ``hvp_count``), ``unlearn_seconds`` (the method's wall time,
compilation excluded when ``warmup``), ``steps``, ``dense_hessians``, ``retrained``, ``certified_epsilon``,
``residual_spent``, ``residual_budget`` (the certificate of the model "newton" publishes; NaN for every
other method, which certifies nothing), ``num_forget``, ``forget_class_fraction`` (share of the forgotten
rows from ``target_class``, or from the first class when there is none), ``n_train``, ``n_test``,
``n_features``, ``train_seconds`` (the initial certified fit). Every column but those ending in ``_seconds``
is a deterministic function of ``(settings, seed)`` on one machine.

Sum convention (THEORY.md Sec. 1): ``L_b(w; D') = sum_{i in D'} l(x_i w, y_i) + lambda n'/2 ||w||^2 + <b, w>``
with ``n'`` the retained rows.

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models. ICML 2020,
  arXiv:1911.03030. Golatkar, Achille, Soatto. Eternal Sunshine of the Spotless Net. CVPR 2020,
  arXiv:1911.04933 (fine-tuning). Thudi et al. Unrolling SGD. EuroS&P 2022, arXiv:2109.13398 (gradient ascent).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from certunlearn import api, data, evaluate, figures

__all__ = ["DEFAULTS", "FAMILY", "default_settings", "forget_order", "plot", "resolve_settings", "run_seed"]

FAMILY = "baselines"

#: Every setting of the family and its default (a config may override any of them, and nothing else).
DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "digits",
    "classes": (3, 8),
    "n_train": None,
    "n_test": None,
    "data_seed": 0,
    "n_features": None,
    # the certified model (certunlearn.fit)
    "loss": "logistic",
    "l2_reg": 1e-3,
    "sigma": 1.0,
    "residual_budget": None,
    "epsilon": 1.0,
    "delta": 1e-4,
    "calibration": "analytic",
    "bound": "data-dependent",
    "update": "guo",
    "solver": "auto",
    "cg_preconditioner": "auto",
    # the deletion requests
    "methods": evaluate.METHODS,
    "forget_sizes": (1, 10, 50),
    "removal_order": "random",
    "target_class": None,
    # the gradient baselines (full batch; learning rates on the mean objective)
    "finetune_steps": 25,
    "finetune_learning_rate": 10.0,
    "ascent_steps": 10,
    "ascent_learning_rate": 1.0,
    "optimizer": "sgd",
    # timing
    "warmup": True,
}

ORDERS = ("random", "class")
_METHOD_LABELS = {
    "newton": "Newton (certified)",
    "retrain": "retrain (oracle)",
    "finetune": "fine-tune",
    "gradient_ascent": "gradient ascent",
    "none": "none (original)",
}
_METHOD_COLORS = {"newton": "C0", "retrain": "k", "finetune": "C2", "gradient_ascent": "C3", "none": "C7"}
_STYLE = {"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 7}


def default_settings(**changes) -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULTS` with ``changes`` applied (unknown names raise ValueError).

    >>> default_settings(l2_reg=1e-2)["l2_reg"]
    0.01
    """
    return resolve_settings(changes, DEFAULTS, family=FAMILY)


# ----------------------------------------------------------------------------------------------------
# Settings, data and removal orders (shared with the ``mia`` family)


def _int(name, value, *, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _positive(name, value, *, allow_none=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a finite number > 0{' or None' if allow_none else ''}, got {value!r}")
    return float(value)


def _ints(name, value, *, minimum):
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or not value:
        raise ValueError(f"{name} must be a non-empty tuple of ints >= {minimum}, got {value!r}")
    out = tuple(_int(name, v, minimum=minimum) for v in value)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {value!r}")
    return out


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def resolve_settings(settings: Mapping[str, Any], defaults: Mapping[str, Any], *, family: str) -> dict[str, Any]:
    """``defaults`` updated with ``settings``, validated (the checks common to the evaluation families).

    Raises:
      ValueError: an unknown setting (the message lists the known ones) or a value out of range; the
        message names the setting, the value and what it must be.
    """
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {family} settings {unknown}; known settings: {sorted(defaults)}")
    s = {**defaults, **dict(settings)}
    if not isinstance(s["dataset"], str):
        raise ValueError(f"dataset must be a data set name (e.g. 'digits'), got {s['dataset']!r}")
    if s["classes"] is not None:
        s["classes"] = _ints("classes", s["classes"], minimum=0)
        if len(s["classes"]) < 2:
            raise ValueError(f"classes must list at least 2 class ids (or be None), got {s['classes']!r}")
    for name in ("n_train", "n_test"):
        s[name] = _int(name, s[name], minimum=1, allow_none=True)
    s["data_seed"] = _int("data_seed", s["data_seed"], minimum=0)
    s["n_features"] = _int("n_features", s["n_features"], minimum=1, allow_none=True)
    if s["n_features"] is not None and s["dataset"] != "synthetic":
        raise ValueError(f"n_features is for dataset='synthetic' only, got n_features={s['n_features']!r} with "
                         f"dataset={s['dataset']!r}; set it to None")
    _choice("loss", s["loss"], ("logistic", "softmax"))
    binary = s["classes"] is not None and len(s["classes"]) == 2
    if (s["loss"] == "logistic") != binary:
        raise ValueError(
            f"loss={s['loss']!r} does not match classes={s['classes']!r}: use loss='logistic' with two classes, "
            "loss='softmax' with three or more (or classes=None)"
        )
    s["l2_reg"] = _positive("l2_reg", s["l2_reg"])
    if s["sigma"] is not None and s["residual_budget"] is not None:
        raise ValueError(
            f"set sigma or residual_budget, not both (got sigma={s['sigma']!r}, "
            f"residual_budget={s['residual_budget']!r}); set the other to None"
        )
    s["sigma"] = _positive("sigma", s["sigma"], allow_none=True)
    s["residual_budget"] = _positive("residual_budget", s["residual_budget"], allow_none=True)
    _choice("bound", s["bound"], ("worst-case", "data-dependent", "exact"))
    _choice("update", s["update"], ("guo", "gradient"))
    _choice("calibration", s["calibration"], ("analytic", "guo"))
    s["epsilon"] = _positive("epsilon", s["epsilon"])
    s["delta"] = _positive("delta", s["delta"])
    if not s["delta"] < 1:
        raise ValueError(f"delta must lie in (0, 1), got {s['delta']!r}")
    if "methods" in s:
        methods = s["methods"]
        methods = (methods,) if isinstance(methods, str) else tuple(methods)
        if not methods or any(m not in evaluate.METHODS for m in methods) or len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct names from {list(evaluate.METHODS)}, got {s['methods']!r}")
        s["methods"] = methods
    if "removal_order" in s:
        _choice("removal_order", s["removal_order"], ORDERS)
        s["target_class"] = _int("target_class", s["target_class"], minimum=0, allow_none=True)
        if s["removal_order"] == "class" and s["target_class"] is None:
            raise ValueError('removal_order="class" needs target_class (an original class id), got None')
        if s["target_class"] is not None and s["classes"] is not None and s["target_class"] not in s["classes"]:
            raise ValueError(f"target_class must be one of classes={s['classes']!r}, got {s['target_class']!r}")
    for name in ("finetune_steps", "ascent_steps"):
        if name in s:
            s[name] = _int(name, s[name], minimum=0)
    for name in ("finetune_learning_rate", "ascent_learning_rate"):
        if name in s:
            s[name] = _positive(name, s[name])
    if "optimizer" in s:
        _choice("optimizer", s["optimizer"], ("sgd", "adam"))
    if "warmup" in s and not isinstance(s["warmup"], (bool, np.bool_)):
        raise ValueError(f"warmup must be True or False, got {s['warmup']!r}")
    return s


@functools.lru_cache(maxsize=8)
def _cached_dataset(name, classes, n_train, n_test, seed, n_features):
    extra = {} if n_features is None else {"n_features": n_features}
    return data.load(name, classes=classes, n_train=n_train, n_test=n_test, seed=seed, **extra)


def load_dataset(s: Mapping[str, Any]) -> data.Dataset:
    """The family's :class:`certunlearn.data.Dataset` (rows centred and L2-normalised; cached, read-only)."""
    return _cached_dataset(s["dataset"], s["classes"], s["n_train"], s["n_test"], s["data_seed"], s["n_features"])


def class_labels(s: Mapping[str, Any], dataset: data.Dataset, class_id: int):
    """The training label of the original class ``class_id`` (+1/-1 binary, an index otherwise)."""
    if dataset.task == "binary":
        return 1.0 if class_id == s["classes"][0] else -1.0
    return class_id if s["classes"] is None else s["classes"].index(class_id)


def forget_order(s: Mapping[str, Any], dataset: data.Dataset, seed: int) -> np.ndarray:
    """Training-row indices in the order they are forgotten (prefixes are the forget sets).

    ``"random"``: a permutation of all rows from ``numpy.random.default_rng([seed, 1])``; ``"class"``: only
    the rows of ``target_class``, in a permutation from the same generator.
    """
    rng = np.random.default_rng([int(seed), 1])
    if s.get("removal_order", "random") == "random":
        return rng.permutation(dataset.n_train)
    label = class_labels(s, dataset, s["target_class"])
    rows = np.flatnonzero(np.asarray(dataset.y_train) == label)
    return rows[rng.permutation(rows.size)]


def fit_model(s: Mapping[str, Any], dataset: data.Dataset, seed: int) -> tuple[api.CertifiedModel, float]:
    """The certified model of a seed (noise key ``jax.random.key(seed)``) and its training time in seconds."""
    start = time.perf_counter()
    model = api.fit(
        dataset.X_train, dataset.y_train, loss=s["loss"], l2_reg=s["l2_reg"], epsilon=s["epsilon"],
        delta=s["delta"], sigma=s["sigma"], residual_budget=s["residual_budget"], calibration=s["calibration"],
        bound=s["bound"], update=s["update"], key=jax.random.key(int(seed)), solver=s["solver"],
        cg_preconditioner=s["cg_preconditioner"],
        num_classes=dataset.num_classes if s["loss"] == "softmax" else None,
    )
    jax.block_until_ready(model.params)
    return model, time.perf_counter() - start


def method_kwargs(s: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`certunlearn.evaluate.unlearn` keyword arguments of the gradient baselines in ``s["methods"]``."""
    kw = {
        "finetune": dict(steps=s["finetune_steps"], learning_rate=s["finetune_learning_rate"],
                         optimizer=s["optimizer"]),
        "gradient_ascent": dict(steps=s["ascent_steps"], learning_rate=s["ascent_learning_rate"],
                                optimizer=s["optimizer"]),
    }
    return {m: kw[m] for m in s["methods"] if m in kw}


# ----------------------------------------------------------------------------------------------------
# One seed of one cell


def run_seed(settings: Mapping[str, Any], seed: int) -> list[dict[str, Any]]:
    """One seed of one cell: train, then forget each prefix of the removal order with every method.

    Args:
      settings: the cell's settings (:data:`DEFAULTS` names; missing ones take the defaults).
      seed: the noise key ``jax.random.key(seed)`` of the certified model and the seed of the removal order.

    Returns:
      One row per (forget size, method): the columns listed in the module docstring.

    Raises:
      ValueError: unknown or invalid settings, or a forget size larger than the rows the order can remove.
    """
    s = resolve_settings(settings, DEFAULTS, family=FAMILY)
    s["forget_sizes"] = _ints("forget_sizes", s["forget_sizes"], minimum=1)
    seed = _int("seed", seed, minimum=0)
    dataset = load_dataset(s)
    order = forget_order(s, dataset, seed)
    if max(s["forget_sizes"]) > order.size or max(s["forget_sizes"]) >= dataset.n_train:
        raise ValueError(
            f"forget_sizes must be at most {min(order.size, dataset.n_train - 1)} (the rows that removal_order="
            f"{s['removal_order']!r} can remove while one row remains), got {max(s['forget_sizes'])}"
        )
    model, train_seconds = fit_model(s, dataset, seed)
    first = s["target_class"] if s["target_class"] is not None else (s["classes"] or (0,))[0]
    first_label = class_labels(s, dataset, first)
    y = np.asarray(dataset.y_train)
    rows = []
    for m in s["forget_sizes"]:
        forget = np.sort(order[:m])
        compared = evaluate.compare_methods(
            model, forget, dataset.X_test, dataset.y_test, methods=s["methods"], warmup=s["warmup"],
            method_kwargs=method_kwargs(s),
        )
        for r in compared:
            r = dict(r)
            r["unlearn_seconds"] = r.pop("seconds")
            r["hvp_count"] = math.nan if r["hvp_count"] is None else int(r["hvp_count"])
            rows.append(dict(
                method=r.pop("method"), num_forget=int(m), **r,
                forget_class_fraction=float(np.mean(y[forget] == first_label)),
                n_train=dataset.n_train, n_test=dataset.n_test, n_features=dataset.n_features,
                train_seconds=train_seconds,
            ))
    return rows


# ----------------------------------------------------------------------------------------------------
# Figure


def task_label(part) -> str:
    """``"fashion-mnist 2,4 (logistic)"``-style words for the task of a table's rows."""
    first = part.iloc[0]
    classes = first["classes"] if isinstance(first["classes"], str) else "all"
    n = f", n = {int(first['n_train']):,}" if "n_train" in part and np.isfinite(first["n_train"]) else ""
    return f"{first['dataset']} {'all classes' if classes == 'all' else classes} ({first['loss']}{n})"


def _order_label(part) -> str:
    first = part.iloc[0]
    if first["removal_order"] == "class":
        return f"class-targeted (class {int(first['target_class'])})"
    return "random rows"


def band(ax, stats, x: str, *, label: str, color=None, linestyle="-", marker="o"):
    """A line through ``stats["center"]`` against ``stats[x]`` and a band from ``low`` to ``high``."""
    stats = stats.sort_values(x)
    (line,) = ax.plot(stats[x], stats["center"], linestyle=linestyle, marker=marker, markersize=3, color=color,
                      label=label)
    ax.fill_between(stats[x], stats["low"], stats["high"], color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def method_legend(fig, axes) -> None:
    """One legend below the figure with every method drawn in ``axes``, in the order of ``METHODS``."""
    handles = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    order = [_METHOD_LABELS[m] for m in evaluate.METHODS]
    labels = sorted(handles, key=lambda lab: order.index(lab) if lab in order else len(order))
    fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center", ncols=max(len(labels), 1))


def _methods_in(table) -> list[str]:
    present = set(table["method"])
    return [m for m in evaluate.METHODS if m in present]


def plot(table, *, method: str = "median_iqr"):
    """Distance to the retrained model, test-prediction disagreement with it, forget-set accuracy and wall
    time against the number of forgotten rows, one colour per method; one row of panels per task and
    removal order. Lines are the centre over seeds, bands the spread (:func:`certunlearn.figures.seed_stats`).

    The retrained oracle has distance 0 by construction and is left out of the log-scale distance panel;
    hollow markers on the Newton curve mark forget sizes where some seed's removal overflowed the budget
    and was served by a retrain (fresh noise).
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    table = table.copy()
    table["classes"] = table["classes"].fillna("all").astype(str)  # None (all classes) is stored as NaN
    table["disagreement_pct"] = 100.0 * table["prediction_disagreement"]
    table["forget_accuracy_pct"] = 100.0 * table["accuracy_forget"]
    groups = [g for _, g in table.groupby(["dataset", "classes", "loss", "removal_order"], sort=True)]
    panels = [
        ("param_distance", "\u2016w \u2212 w_retrain\u2016\u2082", "log"),
        ("disagreement_pct", "test predictions \u2260 retrained (%)", "linear"),
        ("forget_accuracy_pct", "accuracy on forgotten rows (%)", "linear"),
        ("unlearn_seconds", "seconds per deletion request", "log"),
    ]
    with rc_context(_STYLE):
        fig = Figure(figsize=(3.3 * len(panels), 2.7 * len(groups) + 0.6), layout="constrained")
        axes = fig.subplots(len(groups), len(panels), squeeze=False)
    n_seeds = []
    for row, part in zip(axes, groups):
        for ax, (column, ylabel, scale) in zip(row, panels):
            for name in _methods_in(part):
                rows = part[part["method"] == name]
                if column == "param_distance" and name == "retrain":
                    continue
                stats = figures.seed_stats(rows, ["num_forget"], column, method=method)
                if scale == "log":
                    stats = stats[stats["center"] > 0]
                if stats.empty:
                    continue
                n_seeds.extend(stats["n_seeds"])
                line = band(ax, stats, "num_forget", label=_METHOD_LABELS[name], color=_METHOD_COLORS[name])
                if name == "newton":
                    over = rows.groupby("num_forget")["retrained"].any()
                    over = stats[stats["num_forget"].map(over).fillna(False).astype(bool)]
                    ax.plot(over["num_forget"], over["center"], "o", markersize=7, markerfacecolor="white",
                            color=line.get_color(), zorder=3)
            ax.set_xscale("log")
            ax.set_yscale(scale)
            ax.set_xlabel("rows forgotten in one request")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
        row[0].set_title(f"{task_label(part)}: {_order_label(part)}", fontsize=8, loc="left")
    method_legend(fig, axes)
    eps = ", ".join(f"{e:g}" for e in sorted(table["epsilon"].unique()))
    fig.suptitle(
        f"Unlearning baselines vs the same-noise retrain (\u03b5 = {eps}); "
        f"{figures.spread_label(method, n_seeds)}; \u25cb: Newton request served by a retrain",
        fontsize=9,
    )
    return fig, axes
