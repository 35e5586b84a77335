"""The ``mia`` family: membership inference on forgotten rows after each unlearning method.

What one seed of one cell measures. A certified model (:func:`certunlearn.fit`, noise key
``jax.random.key(seed)``) is trained on the training rows ``D``; ``num_forget`` rows ``U`` drawn at random
(``numpy.random.default_rng([seed, 1])``) are forgotten by each method of
:data:`certunlearn.evaluate.METHODS` (Newton in certified requests of ``removal_batch`` rows, every other
method in one request; as in the ``baselines`` family: ``newton`` certified, ``retrain`` the
same-noise oracle, ``finetune``, ``gradient_ascent``, and ``none``, the original model: the *positive
control*, whose forgotten rows are still training members). Each published model is attacked with the
forgotten rows as "members" and the test rows (never seen by any model) as "non-members":

* ``"loss"``: the loss-threshold attack (Yeom et al. 2018), score ``-l(x w, y)``
  (:func:`certunlearn.audit.loss_threshold_attack`);
* ``"lira"``: the online likelihood-ratio attack (Carlini et al. 2022, :func:`certunlearn.audit.lira_attack`)
  with ``num_shadow`` shadow models trained once per seed, in one vmapped call, on random halves of the
  population ``D`` + test rows, with the target's procedure (same ``l2_reg``, noise ``sigma`` and loss). With
  ``n_test = n_train`` every shadow trains on as many rows as the target.

An unlearning method that works gives AUC ~ 0.5 and TPR ~ FPR (like ``retrain``); the original model, in
a setting that memorises (small ``l2_reg``, more features than rows), gives a clearly higher AUC. A TPR at
an FPR below ``1 / n_nonmembers`` can only be met at FPR = 0 (``n_nonmembers`` is in the table).

Rows: one per (``method``, ``attack``): ``auc``, ``advantage`` (max TPR - FPR), ``tpr_at_fpr_<f>`` for each
``f`` in ``fprs`` (column names use ``format(f, "g")``: ``tpr_at_fpr_0.001``), ``n_members``,
``n_nonmembers``; the method's ``param_distance`` to the retrained model, ``accuracy_forget``,
``accuracy_test``, ``loss_forget``, ``requests`` (deletion requests made: Newton removes ``U`` in requests
of ``removal_batch`` rows, one request if None, each certified by :func:`certunlearn.remove`; every other
method takes ``U`` in one request), ``retrains`` (Newton requests that would have overflowed the residual
budget and were served by a retrain with fresh noise, as certified removal must) and ``retrained``
(``retrains > 0``), ``certified_epsilon`` (the certificate of the model Newton publishes; NaN for methods
that certify nothing), ``unlearn_seconds`` (all requests); per seed ``shadows_converged`` (every shadow reached
its tolerance), ``shadow_seconds``, ``train_seconds``, ``train_accuracy`` and ``test_accuracy`` of the
original model, ``n_train``, ``n_test``, ``n_features``. Every column but those ending in ``_seconds`` is a
deterministic function of ``(settings, seed)`` on one machine.

Sum convention (THEORY.md Sec. 1) for every model and shadow.

References:
  Carlini et al. Membership Inference Attacks From First Principles. S&P 2022, arXiv:2112.03570.
  Yeom et al. Privacy Risk in Machine Learning. CSF 2018, arXiv:1709.01604.
  Guo et al. Certified Data Removal from Machine Learning Models. ICML 2020, arXiv:1911.03030.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from certunlearn import audit, evaluate, figures
from certunlearn.families import baselines

__all__ = ["ATTACKS", "DEFAULTS", "FAMILY", "default_settings", "fpr_column", "plot", "run_seed"]

FAMILY = "mia"
ATTACKS = ("loss", "lira")

#: Every setting of the family and its default (a config may override any of them, and nothing else).
DEFAULTS: dict[str, Any] = {
    # data: the population is the training rows plus the test rows (the non-members)
    "dataset": "digits",
    "classes": (3, 8),
    "n_train": None,
    "n_test": None,
    "data_seed": 0,
    "n_features": None,
    # the certified model (certunlearn.fit); the shadows copy loss, l2_reg and its sigma
    "loss": "logistic",
    "l2_reg": 1e-3,
    "sigma": 0.1,
    "residual_budget": None,
    "epsilon": 1.0,
    "delta": 1e-4,
    "calibration": "analytic",
    "bound": "exact",
    "update": "guo",
    "solver": "auto",
    "cg_preconditioner": "auto",
    # the deletion request
    "methods": evaluate.METHODS,
    "num_forget": 50,
    "removal_batch": None,
    "finetune_steps": 25,
    "finetune_learning_rate": 10.0,
    "ascent_steps": 10,
    "ascent_learning_rate": 1.0,
    "optimizer": "sgd",
    "warmup": False,
    # the attacks
    "attacks": ATTACKS,
    "num_shadow": 16,
    "lira_online": True,
    "lira_fix_variance": False,
    "fprs": (1e-3, 1e-2, 1e-1),
}

_ATTACK_LABELS = {"loss": "loss threshold", "lira": "LiRA"}


def default_settings(**changes) -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULTS` with ``changes`` applied (unknown names raise ValueError).

    >>> default_settings(num_forget=10)["num_forget"]
    10
    """
    return _resolve(changes)


def fpr_column(fpr: float) -> str:
    """The table column of the TPR at ``fpr``: ``fpr_column(0.001) == "tpr_at_fpr_0.001"``."""
    return f"tpr_at_fpr_{float(fpr):g}"


def _resolve(settings: Mapping[str, Any]) -> dict[str, Any]:
    s = baselines.resolve_settings(settings, DEFAULTS, family=FAMILY)
    s["num_forget"] = baselines._int("num_forget", s["num_forget"], minimum=1)
    s["removal_batch"] = baselines._int("removal_batch", s["removal_batch"], minimum=1, allow_none=True)
    attacks = (s["attacks"],) if isinstance(s["attacks"], str) else tuple(s["attacks"])
    if not attacks or any(a not in ATTACKS for a in attacks) or len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks must be distinct names from {list(ATTACKS)}, got {s['attacks']!r}")
    s["attacks"] = attacks
    s["num_shadow"] = baselines._int("num_shadow", s["num_shadow"], minimum=4)
    if s["num_shadow"] % 2:
        raise ValueError(f"num_shadow must be even (every row IN for half the shadows), got {s['num_shadow']}")
    for name in ("lira_online", "lira_fix_variance"):
        if not isinstance(s[name], (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {s[name]!r}")
    fprs = s["fprs"]
    fprs = (fprs,) if isinstance(fprs, (int, float)) else tuple(fprs)
    if not fprs or not all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in fprs
    ) or len(set(fprs)) != len(fprs):
        raise ValueError(f"fprs must be distinct false-positive rates in (0, 1), got {s['fprs']!r}")
    s["fprs"] = tuple(float(f) for f in fprs)
    return s


def _newton_requests(model, forget, s):
    """Certified Newton removal of ``forget`` in requests of ``removal_batch`` rows (one request if None).

    Returns ``(last UnlearnResult, requests, retrains, seconds)``: a request that would overflow the
    budget is served by a retrain with fresh noise (:func:`certunlearn.remove`), counted in ``retrains``.
    """
    batch = s["removal_batch"] or forget.size
    current, retrains, seconds, requests = model, 0, 0.0, 0
    for lo in range(0, forget.size, batch):
        result = evaluate.unlearn("newton", current, forget_idx=forget[lo : lo + batch], warmup=s["warmup"])
        current, requests = result.model, requests + 1
        retrains += bool(result.report.retrained)
        seconds += result.seconds
    return result, requests, retrains, seconds


def run_seed(settings: Mapping[str, Any], seed: int) -> list[dict[str, Any]]:
    """One seed of one cell: train, forget ``num_forget`` random rows with every method, attack each result.

    Args:
      settings: the cell's settings (:data:`DEFAULTS` names; missing ones take the defaults).
      seed: the noise key of the certified model, the forget set's seed and (folded in) the shadows' key.

    Returns:
      One row per (method, attack): the columns listed in the module docstring.

    Raises:
      ValueError: unknown or invalid settings, or ``num_forget`` not below the number of training rows.
    """
    s = _resolve(settings)
    seed = baselines._int("seed", seed, minimum=0)
    dataset = baselines.load_dataset(s)
    n, n_test = dataset.n_train, dataset.n_test
    if s["num_forget"] >= n:
        raise ValueError(f"num_forget must be below the {n} training rows (one must remain), got {s['num_forget']}")
    model, train_seconds = baselines.fit_model(s, dataset, seed)
    forget = np.sort(baselines.forget_order({**s, "removal_order": "random"}, dataset, seed)[: s["num_forget"]])
    X_pop = np.concatenate([np.asarray(dataset.X_train, np.float64), np.asarray(dataset.X_test, np.float64)])
    y_pop = np.concatenate([np.asarray(dataset.y_train), np.asarray(dataset.y_test)])
    nonmembers = n + np.arange(n_test)
    loss = s["loss"]

    shadows, shadow_seconds = None, math.nan
    if "lira" in s["attacks"]:
        start = time.perf_counter()
        shadows = audit.train_shadow_models(
            X_pop, y_pop, loss=loss, l2_reg=s["l2_reg"], num_shadow=s["num_shadow"],
            sigma=model.certificate().sigma, key=jax.random.fold_in(jax.random.key(int(seed)), 7),
            num_classes=dataset.num_classes if loss == "softmax" else None,
        )
        shadow_seconds = time.perf_counter() - start

    X, y = np.asarray(dataset.X_train, np.float64), np.asarray(dataset.y_train)
    common = dict(
        shadows_converged=bool(np.all(shadows.converged)) if shadows is not None else math.nan,
        shadow_seconds=shadow_seconds, train_seconds=train_seconds,
        train_accuracy=evaluate.accuracy(model.params, X, y, loss=loss),
        test_accuracy=evaluate.accuracy(model.params, dataset.X_test, dataset.y_test, loss=loss),
        n_train=n, n_test=n_test, n_features=dataset.n_features,
    )
    kwargs = baselines.method_kwargs(s)
    reference = evaluate.unlearn("retrain", model, forget_idx=forget, warmup=s["warmup"])
    rows = []
    for method in s["methods"]:
        requests, retrains = 1, 0
        if method == "retrain":
            result, seconds = reference, reference.seconds
        elif method == "newton":
            result, requests, retrains, seconds = _newton_requests(model, forget, s)
        else:
            result = evaluate.unlearn(method, model, forget_idx=forget, warmup=s["warmup"], **kwargs.get(method, {}))
            seconds = result.seconds
        params = np.asarray(result.params, np.float64)
        metrics = evaluate.unlearning_metrics(
            params, reference.params, X, y, forget, dataset.X_test, dataset.y_test, loss=loss, l2_reg=s["l2_reg"],
            perturbation=(result.model or model).perturbation,
        )
        certificate = result.model.certificate() if result.model is not None else None
        about = dict(
            param_distance=metrics.param_distance, accuracy_forget=metrics.accuracy_forget,
            accuracy_test=metrics.accuracy_test, loss_forget=metrics.loss_forget,
            requests=requests, retrains=retrains, retrained=retrains > 0,
            certified_epsilon=certificate.epsilon if certificate is not None else math.nan,
            unlearn_seconds=seconds,
        )
        for attack in s["attacks"]:
            if attack == "loss":
                r = audit.loss_threshold_attack(
                    params, X_pop[forget], y_pop[forget], X_pop[nonmembers], y_pop[nonmembers], loss=loss,
                    fprs=s["fprs"],
                )
            else:
                r = audit.lira_attack(
                    params, X_pop, y_pop, forget, nonmembers, loss=loss, shadows=shadows, online=s["lira_online"],
                    fix_variance=s["lira_fix_variance"], fprs=s["fprs"],
                )
            scores = {fpr_column(f): r.tpr_at_fpr[f] for f in s["fprs"]}
            rows.append(dict(
                method=method, attack=attack, auc=r.auc, advantage=r.advantage, **scores,
                n_members=r.n_members, n_nonmembers=r.n_nonmembers, **about, **common,
            ))
    return rows


# ----------------------------------------------------------------------------------------------------
# Figure


def _fprs_in(table) -> list[float]:
    return sorted(float(c[len("tpr_at_fpr_"):]) for c in table.columns if c.startswith("tpr_at_fpr_"))


def plot(table, *, method: str = "median_iqr"):
    """Membership-inference AUC per unlearning method, and TPR at low FPR, spread over seeds.

    One row of panels per task (data set, classes, loss) and number of forgotten rows. Left panels (one
    per attack): AUC against ``l2_reg`` (log scale), one colour per method; ``none`` (the original model)
    is the positive control and ``retrain`` the chance reference (the dotted line is AUC = 0.5). Right
    panel: TPR against FPR (log-log) at the stored FPRs for the smallest ``l2_reg`` (the most memorising
    cell), LiRA if present, one colour per method; the diagonal is chance (TPR = FPR). A TPR of 0 is drawn
    at half a member (``0.5 / n_members``) so that it shows on the log scale.
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    table = table.copy()
    table["classes"] = table["classes"].fillna("all").astype(str)  # None (all classes) is stored as NaN
    attacks = [a for a in ATTACKS if a in set(table["attack"])]
    fprs = _fprs_in(table)
    groups = [g for _, g in table.groupby(["dataset", "classes", "loss", "num_forget"], sort=True)]
    ncols = len(attacks) + 1
    with rc_context(baselines._STYLE):
        fig = Figure(figsize=(3.6 * ncols, 2.9 * len(groups) + 0.6), layout="constrained")
        axes = fig.subplots(len(groups), ncols, squeeze=False)
    n_seeds = []
    for row, part in zip(axes, groups):
        methods = baselines._methods_in(part)
        lambdas = sorted(part["l2_reg"].unique())
        for ax, attack in zip(row, attacks):
            rows = part[part["attack"] == attack]
            for name in methods:
                stats = figures.seed_stats(rows[rows["method"] == name], ["l2_reg"], "auc", method=method)
                n_seeds.extend(stats["n_seeds"])
                if len(lambdas) == 1:
                    ax.errorbar(stats["l2_reg"], stats["center"], fmt="o", markersize=4, capsize=2,
                                yerr=[stats["center"] - stats["low"], stats["high"] - stats["center"]],
                                color=baselines._METHOD_COLORS[name], label=baselines._METHOD_LABELS[name])
                else:
                    baselines.band(ax, stats, "l2_reg", label=baselines._METHOD_LABELS[name],
                                   color=baselines._METHOD_COLORS[name])
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
            ax.set_xscale("log")
            ax.set_xlabel("l2_reg \u03bb (sum convention)")
            ax.set_ylabel(f"AUC, {_ATTACK_LABELS[attack]} attack")
        roc_attack = "lira" if "lira" in attacks else attacks[0]
        low = part[(part["attack"] == roc_attack) & (part["l2_reg"] == lambdas[0])]
        ax = row[-1]
        for name in methods:
            rows = low[low["method"] == name]
            centre, lo, hi = [], [], []
            for f in fprs:
                stats = figures.seed_stats(rows, ["method"], fpr_column(f), method=method)
                centre.append(float(stats["center"].iloc[0]))
                lo.append(float(stats["low"].iloc[0]))
                hi.append(float(stats["high"].iloc[0]))
            floor = 0.5 / max(int(rows["n_members"].max()), 1)  # an empty TPR drawn at half a member
            ax.plot(fprs, np.maximum(centre, floor), marker="o", markersize=3, color=baselines._METHOD_COLORS[name],
                    label=baselines._METHOD_LABELS[name])
            ax.fill_between(fprs, np.maximum(lo, floor), np.maximum(hi, floor), alpha=0.2, linewidth=0,
                            color=baselines._METHOD_COLORS[name])
        grid = np.array([min(fprs), 1.0])
        ax.plot(grid, grid, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel(f"TPR, {_ATTACK_LABELS[roc_attack]} (\u03bb = {lambdas[0]:g})")
        first = part.iloc[0]
        n_non = int(part["n_nonmembers"].min())
        row[0].set_title(
            f"{baselines.task_label(part)}: forget {int(first['num_forget'])} random rows vs {n_non:,} unseen "
            f"test rows",
            fontsize=8, loc="left",
        )
    baselines.method_legend(fig, axes)
    eps = ", ".join(f"{e:g}" for e in sorted(table["epsilon"].unique()))
    shadows = ", ".join(str(int(v)) for v in sorted(table["num_shadow"].unique()))
    fig.suptitle(
        f"Membership inference on forgotten vs unseen rows (\u03b5 = {eps}, {shadows} LiRA shadows); "
        f"{figures.spread_label(method, n_seeds)}; dotted: chance",
        fontsize=9,
    )
    return fig, axes
