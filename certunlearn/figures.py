"""The paper's figures from stored results: load -> seeded statistics over seeds -> ``plot(...) -> (fig, ax)``.

Nothing here trains a model: every figure reads a results folder written by :mod:`certunlearn.runner`
(``results.csv`` + ``manifest.json``) and only computes statistics of the stored numbers (and, for the
budget figure, residual budgets with :func:`certunlearn.calibration.budget_for_sigma`). Figures are
built on :class:`matplotlib.figure.Figure` directly (no pyplot, so no global backend state; PNG through
Agg) and every curve shows the spread over seeds (median and interquartile range by default), with the
number of seeds in the legend or title.

Layout of a results root for :func:`make_all`: one folder per family, e.g. ``results/accuracy``,
``results/budget``, ... (a folder is matched by its ``manifest.json`` family, so any name works).

Figures (``FIGURES``):

* ``accuracy``: test accuracy against l2_reg, one curve per sigma (family ``accuracy``).
* ``budget``: removals supported before the first retrain against epsilon, per l2_reg, analytic (solid)
  and guo (dashed) calibration (family ``budget``).
* ``bounds``: accumulated worst-case and data-dependent bounds and the exact residual against removals,
  log scale, one panel per removal order (family ``bounds``).
* ``timing``: seconds per removal and per retrain against n, per solver (family ``timing``).
* ``multiclass``: test accuracy (unlearned; retrained at checkpoints) and the budget fraction spent
  against removals, binary vs softmax (family ``multiclass``).

:func:`registry` adds the figure of every :mod:`certunlearn.families` module (``audit``: certified epsilon
against the audited epsilon_LB; and the task families'), so ``certunlearn figures`` builds them all.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "FIGURES",
    "find_results",
    "load_results",
    "make_all",
    "make_figure",
    "registry",
    "plot_accuracy",
    "plot_bounds",
    "plot_budget",
    "plot_multiclass",
    "plot_timing",
    "removals_supported",
    "save",
    "seed_stats",
    "spread_label",
]

METHODS = ("median_iqr", "mean_sem", "bootstrap")
DEFAULT_EPSILONS = tuple(float(e) for e in np.geomspace(0.1, 10.0, 11))
_STYLE = {"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 7}


# ----------------------------------------------------------------------------------------------------
# Loading.


def _manifest_family(folder: Path) -> str | None:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("family")
    except (OSError, ValueError):
        return None


def find_results(results_dir, family: str) -> Path:
    """The folder under ``results_dir`` (or ``results_dir`` itself) holding ``family``'s results.

    Looked up in order: ``results_dir`` itself, ``results_dir/<family>``, then every folder below
    ``results_dir`` (sorted by path), matching the ``family`` of its ``manifest.json``.

    Raises:
      FileNotFoundError: no folder with a ``results.csv`` for ``family``.
    """
    root = Path(results_dir)
    candidates = [root, root / family] + sorted(p.parent for p in root.rglob("manifest.json"))
    for folder in candidates:
        if (folder / "results.csv").exists() and _manifest_family(folder) == family:
            return folder
    raise FileNotFoundError(
        f"no results for family {family!r} under {root}: run "
        f"`certunlearn sweep experiments/configs/{family}.py --out {root / family}` first"
    )


def load_results(results_dir, family: str | None = None):
    """The rows of finished cells (``status == "ok"``) of a results folder, as a pandas DataFrame.

    Args:
      results_dir: a results folder, or a root holding one folder per family (then ``family`` is needed).
      family: the family to look for (:func:`find_results`); ``None`` reads ``results_dir`` itself.
    """
    import pandas as pd

    folder = Path(results_dir) if family is None else find_results(results_dir, family)
    table = pd.read_csv(folder / "results.csv")
    if "status" in table:
        failed = table[table["status"] != "ok"]
        if len(failed):
            count = failed["cell"].nunique()
            warnings.warn(f"{folder}: {count} failed cell(s) left out of the figure", stacklevel=2)
        table = table[table["status"] == "ok"].copy()
    if table.empty:
        raise ValueError(f"{folder}/results.csv holds no finished cells")
    return table


# ----------------------------------------------------------------------------------------------------
# Statistics over seeds.


def seed_stats(table, by: Sequence[str], value: str, *, method: str = "median_iqr", seed: int = 0,
               n_boot: int = 2000, confidence: float = 0.95):
    """Centre and spread of ``value`` over seeds, for each group of ``by``.

    ``table`` must hold one row per (group, seed). Methods:

    * ``"median_iqr"``: the median and the 25th and 75th percentiles (linear interpolation).
    * ``"mean_sem"``: the mean plus and minus one standard error ``std(ddof=1) / sqrt(n)`` (0 for n = 1).
    * ``"bootstrap"``: the mean and a percentile bootstrap ``confidence`` interval from ``n_boot``
      resamples drawn with ``numpy.random.default_rng(seed)`` (the only randomness; same seed, same
      interval).

    Returns:
      A DataFrame with the ``by`` columns and ``center``, ``low``, ``high``, ``n_seeds``, sorted by ``by``.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"x": [1, 1, 1, 2], "seed": [0, 1, 2, 0], "v": [1.0, 2.0, 4.0, 5.0]})
    >>> seed_stats(t, ["x"], "v").values.tolist()
    [[1.0, 2.0, 1.5, 3.0, 3.0], [2.0, 5.0, 5.0, 5.0, 1.0]]
    """
    import pandas as pd

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    by = list(by)
    if "seed" in table and table.duplicated(by + ["seed"]).any():
        raise ValueError(f"seed_stats needs one row per ({', '.join(by)}, seed); reduce the table first")
    rng = np.random.default_rng(seed)
    out = []
    for group, part in table.groupby(by, sort=True, dropna=False):
        values = part[value].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        keys = dict(zip(by, group if isinstance(group, tuple) else (group,)))
        if values.size == 0:
            out.append({**keys, "center": math.nan, "low": math.nan, "high": math.nan, "n_seeds": 0})
            continue
        if method == "median_iqr":
            low, center, high = np.percentile(values, [25, 50, 75])
        elif method == "mean_sem":
            center = values.mean()
            sem = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else 0.0
            low, high = center - sem, center + sem
        else:
            center = values.mean()
            means = rng.choice(values, size=(n_boot, values.size), replace=True).mean(axis=1)
            alpha = (1.0 - confidence) / 2
            low, high = np.quantile(means, [alpha, 1 - alpha])
        out.append({**keys, "center": float(center), "low": float(low), "high": float(high),
                    "n_seeds": int(values.size)})
    return pd.DataFrame(out, columns=by + ["center", "low", "high", "n_seeds"])


def spread_label(method: str, n_seeds) -> str:
    """Words for a spread, e.g. ``"median and IQR over 3 seeds"``."""
    counts = sorted({int(n) for n in np.atleast_1d(n_seeds) if int(n) > 0})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}" if counts else "0"
    words = {"median_iqr": "median and IQR", "mean_sem": "mean \u00b1 s.e.", "bootstrap": "mean and 95% bootstrap CI"}
    return f"{words[method]} over {n} seed{'s' if n != '1' else ''}"


# ----------------------------------------------------------------------------------------------------
# Drawing helpers.


def _new_figure(ncols: int = 1, *, width: float = 4.2, height: float = 3.2):
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(_STYLE):
        fig = Figure(figsize=(width * ncols, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, (axes[0] if ncols == 1 else axes)


def _band(ax, stats, x: str, *, label: str, color=None, linestyle="-", marker="o", band=True):
    stats = stats.sort_values(x)
    (line,) = ax.plot(stats[x], stats["center"], linestyle=linestyle, marker=marker, markersize=3,
                      color=color, label=label)
    if band:
        ax.fill_between(stats[x], stats["low"], stats["high"], color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def _label_sizes(ax, sizes) -> None:
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{int(n):,}" for n in sizes])


def _task_name(table) -> str:
    dataset = str(table["dataset"].iloc[0])
    classes = str(table["classes"].iloc[0])
    return f"{dataset}, classes {classes}" if classes != "all" else f"{dataset}, all classes"


def save(fig, out_dir, name: str) -> list[Path]:
    """Writes ``fig`` as ``out_dir/name.png`` (Agg, 200 dpi) and ``out_dir/name.pdf``; returns the paths.

    Files are written to a temporary name and moved into place; the PDF carries no creation date, so
    the same results give the same bytes.
    """
    import os
    import tempfile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, kwargs in (("png", {"dpi": 200}), ("pdf", {"metadata": {"CreationDate": None}})):
        path = out / f"{name}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{fmt}", dir=out)
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, **kwargs)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------
# Figure 1: accuracy against l2_reg and sigma.


def plot_accuracy(table, *, method: str = "median_iqr"):
    """Test accuracy of the trained (step 0) certified model against ``l2_reg``, one curve per sigma."""
    trained = table[table["step"] == 0]
    stats = seed_stats(trained, ["sigma", "l2_reg"], "test_accuracy", method=method)
    fig, ax = _new_figure()
    for sigma, part in stats.groupby("sigma"):
        _band(ax, part, "l2_reg", label=f"\u03c3 = {sigma:g}")
    ax.set_xscale("log")
    ax.set_xlabel("l2_reg \u03bb (sum convention)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{_task_name(trained)}\n{spread_label(method, stats['n_seeds'])}", fontsize=8)
    ax.legend(title="loss perturbation")
    return fig, ax


# ----------------------------------------------------------------------------------------------------
# Figure 2: removals supported before the first retrain.


def removals_supported(table, epsilons: Sequence[float] = DEFAULT_EPSILONS,
                       calibrations: Sequence[str] = ("analytic", "guo")):
    """Rows removed before the first retrain at each target (epsilon, calibration), per cell and seed.

    Reads each stored trajectory of the spent residual ``beta_t`` up to its first retrain. Under a fixed
    sigma the trajectory does not depend on the target (module ``experiments/configs/budget.py``), so at
    budget ``B = budget_for_sigma(sigma, epsilon, delta, calibration)`` the model removes rows while
    ``beta_t <= B``: the count is ``num_removed`` of the last step before ``beta_t`` first exceeds ``B``.
    If the trajectory ended at a retrain that the cell's own budget forced and ``B`` is below that budget,
    the step that forced it exceeds ``B`` as well, and the count is exact. Otherwise no step exceeded
    ``B`` and the count is a lower bound (``censored=True``).

    Returns:
      A DataFrame: ``cell``, ``seed``, ``l2_reg``, ``sigma``, ``delta``, ``calibration``, ``epsilon``,
      ``budget``, ``supported``, ``censored``.
    """
    import pandas as pd

    from certunlearn.calibration import budget_for_sigma

    out = []
    for (cell, seed), part in table.groupby(["cell", "seed"], sort=True):
        part = part.sort_values("step")
        stops = part.index[part["event"].isin(["retrain", "exhausted"])]
        stop = part.loc[stops[0]] if len(stops) else None
        trajectory = part if stop is None else part.loc[part["step"] < stop["step"]]
        spent = trajectory["residual_spent"].to_numpy(dtype=np.float64)
        removed = trajectory["num_removed"].to_numpy()
        sigma, delta = float(part["sigma"].iloc[0]), float(part["delta"].iloc[0])
        own_budget = float(part["residual_budget"].iloc[0])
        forced = stop is not None and bool(stop["converged"])  # a retrain for budget, not for a failed solve
        for calibration in calibrations:
            for epsilon in epsilons:
                budget = budget_for_sigma(sigma, epsilon=float(epsilon), delta=delta, calibration=calibration)
                over = np.flatnonzero(spent > budget)
                if over.size:
                    supported, censored = (int(removed[over[0] - 1]) if over[0] > 0 else 0), False
                else:
                    supported = int(removed[-1]) if removed.size else 0
                    censored = not (forced and budget < own_budget)
                out.append(dict(cell=cell, seed=seed, l2_reg=float(part["l2_reg"].iloc[0]), sigma=sigma,
                                delta=delta, calibration=calibration, epsilon=float(epsilon), budget=budget,
                                supported=supported, censored=censored))
    return pd.DataFrame(out)


def plot_budget(table, *, epsilons: Sequence[float] = DEFAULT_EPSILONS, method: str = "median_iqr"):
    """Removals supported before the first retrain against epsilon: a colour per l2_reg, analytic
    calibration solid, guo dashed; hollow markers where some seed's count is only a lower bound."""
    supported = removals_supported(table, epsilons)
    stats = seed_stats(supported, ["l2_reg", "calibration", "epsilon"], "supported", method=method)
    censored = supported.groupby(["l2_reg", "calibration", "epsilon"])["censored"].any().rename("censored")
    stats = stats.merge(censored.reset_index(), on=["l2_reg", "calibration", "epsilon"])
    fig, ax = _new_figure(width=4.8, height=3.6)
    colors = {}
    for (l2_reg, calibration), part in stats.groupby(["l2_reg", "calibration"]):
        style = "-" if calibration == "analytic" else "--"
        line = _band(ax, part, "epsilon", label=f"\u03bb = {l2_reg:g}, {calibration}", linestyle=style,
                     color=colors.get(l2_reg), marker=None)
        colors[l2_reg] = line.get_color()
        exact, lower = part[~part["censored"]], part[part["censored"]]
        ax.plot(exact["epsilon"], exact["center"], "o", color=line.get_color(), markersize=3)
        ax.plot(lower["epsilon"], lower["center"], "^", markerfacecolor="none", color=line.get_color(),
                markersize=4)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("\u03b5 (\u03b4 and \u03c3 fixed per run)")
    ax.set_ylabel("removals before the first retrain")
    sigma = ", ".join(f"{s:g}" for s in sorted(supported["sigma"].unique()))
    delta = ", ".join(f"{d:g}" for d in sorted(supported["delta"].unique()))
    ax.set_title(f"{_task_name(table)}, \u03c3 = {sigma}, \u03b4 = {delta}\n"
                 f"{spread_label(method, stats['n_seeds'])}; \u25b3 = lower bound", fontsize=8)
    ax.legend(loc="lower right")
    return fig, ax


# ----------------------------------------------------------------------------------------------------
# Figure 3: bounds against the exact residual.


def plot_bounds(table, *, method: str = "median_iqr", epsilon: float = 1.0):
    """Accumulated worst-case and data-dependent bounds and the exact residual (log scale) against the
    number of removals, one panel per removal order; the dotted line is the budget at ``epsilon``
    (analytic calibration) for the runs' sigma and delta."""
    from certunlearn.calibration import budget_for_sigma

    steps = table[table["num_removed"] > 0]
    orders = [o for o in ("random", "class", "influence") if o in set(steps["removal_order"])]
    fig, axes = _new_figure(len(orders), width=3.8, height=3.8)
    axes = np.atleast_1d(axes)
    for ax, order in zip(axes, orders):
        part = steps[steps["removal_order"] == order]
        curves = [("worst-case", "residual_spent", "worst-case bound (accumulated)"),
                  ("data-dependent", "residual_spent", "data-dependent bound (accumulated)")]
        exact_source = "exact" if "exact" in set(part["bound"]) else "data-dependent"
        curves.append((exact_source, "exact_residual", "exact residual \u2016\u2207L_b(w; D')\u2016"))
        n_seeds = []
        for bound, column, label in curves:
            rows = part[part["bound"] == bound]
            if rows.empty:
                continue
            stats = seed_stats(rows, ["num_removed"], column, method=method)
            n_seeds.extend(stats["n_seeds"])
            _band(ax, stats, "num_removed", label=label, marker=None)
        sigma, delta = float(part["sigma"].iloc[0]), float(part["delta"].iloc[0])
        budget = budget_for_sigma(sigma, epsilon=epsilon, delta=delta, calibration="analytic")
        ax.axhline(budget, color="k", linestyle=":", linewidth=1, label=f"budget at \u03b5 = {epsilon:g} (analytic)")
        ax.set_yscale("log")
        ax.set_xlabel("rows removed")
        ax.set_title(f"{order} order; {spread_label(method, n_seeds)}", fontsize=8)
    axes[0].set_ylabel("gradient residual norm")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    lam = ", ".join(f"{v:g}" for v in sorted(table["l2_reg"].unique()))
    fig.suptitle(f"{_task_name(table)}, \u03bb = {lam}", fontsize=9)
    return fig, axes


# ----------------------------------------------------------------------------------------------------
# Figure 4: time per removal against retraining.


def plot_timing(table, *, method: str = "median_iqr"):
    """Seconds per removal and per retrain from scratch against n_train, per solver; right: their ratio.

    Per seed, the time per removal is the mean over steps 2.. (amortised: it includes the occasional
    refactorisation of the "cached" solver; step 1 may compile), drawn solid; the median step (thin,
    dotted) shows the typical step without refactorisations. The retrain time is the last checkpoint's
    fit from scratch on the retained rows. Spread over seeds as in :func:`seed_stats`.
    """
    import pandas as pd

    later = table[table["step"] >= 2]
    per_seed = later.groupby(["cell", "seed", "solver", "n_train"], as_index=False).agg(
        removal_seconds=("removal_seconds", "mean"), median_step_seconds=("removal_seconds", "median"))
    last = table[table["event"] != "train"].sort_values("step").groupby(["cell", "seed"]).tail(1)
    per_seed = per_seed.merge(last[["cell", "seed", "reference_fit_seconds"]], on=["cell", "seed"])
    per_seed["ratio"] = per_seed["reference_fit_seconds"] / per_seed["removal_seconds"]
    fig, (ax, ax_ratio) = _new_figure(2, width=4.6, height=3.8)
    n_seeds = []
    for solver, part in per_seed.groupby("solver"):
        stats = seed_stats(part, ["n_train"], "removal_seconds", method=method)
        line = _band(ax, stats, "n_train", label=f"{solver}: removal, mean step")
        stats = seed_stats(part, ["n_train"], "median_step_seconds", method=method)
        _band(ax, stats, "n_train", label=f"{solver}: removal, median step", linestyle=":",
              color=line.get_color(), marker=None, band=False)
        stats = seed_stats(part, ["n_train"], "reference_fit_seconds", method=method)
        _band(ax, stats, "n_train", label=f"{solver}: retrain", linestyle="--", color=line.get_color(),
              marker="s")
        stats = seed_stats(part, ["n_train"], "ratio", method=method)
        n_seeds.extend(stats["n_seeds"])
        _band(ax_ratio, stats, "n_train", label=solver, color=line.get_color())
    sizes = sorted(per_seed["n_train"].unique())
    for a in (ax, ax_ratio):
        a.set_xscale("log")
        a.set_yscale("log")
        _label_sizes(a, sizes)
        a.set_xlabel("training rows n")
    ax.set_ylabel("seconds")
    ax_ratio.set_ylabel("retrain time / mean removal time")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3)
    fig.suptitle(f"{_task_name(table)}; {spread_label(method, pd.Series(n_seeds))}", fontsize=9)
    return fig, (ax, ax_ratio)


# ----------------------------------------------------------------------------------------------------
# Figure 5: binary vs multiclass.


def _task_label(part) -> str:
    classes = str(part["classes"].iloc[0])
    loss = str(part["loss"].iloc[0])
    what = "all classes" if classes == "all" else f"classes {classes}"
    return f"{loss}, {what}"


def plot_multiclass(table, *, method: str = "median_iqr"):
    """Left: test accuracy against rows removed (line: unlearned model; squares: retrained from scratch
    at the checkpoints). Right: fraction of the residual budget spent (drops are retrains; ticks on the
    axis mark each seed's retrains)."""
    fig, (ax_acc, ax_budget) = _new_figure(2, width=4.0, height=3.3)
    table = table.assign(budget_fraction=table["residual_spent"] / table["residual_budget"])
    n_seeds = []
    for _, part in table.groupby(["loss", "classes"], sort=True):
        label = _task_label(part)
        stats = seed_stats(part, ["num_removed"], "test_accuracy", method=method)
        n_seeds.extend(stats["n_seeds"])
        line = _band(ax_acc, stats, "num_removed", label=f"{label}: unlearned", marker=None)
        checkpoints = part[np.isfinite(part["test_accuracy_retrained"])]
        stats = seed_stats(checkpoints, ["num_removed"], "test_accuracy_retrained", method=method)
        ax_acc.errorbar(stats["num_removed"], stats["center"],
                        yerr=[stats["center"] - stats["low"], stats["high"] - stats["center"]],
                        fmt="s", markersize=4, markerfacecolor="none", color=line.get_color(),
                        label=f"{label}: retrained")
        stats = seed_stats(part, ["num_removed"], "budget_fraction", method=method)
        _band(ax_budget, stats, "num_removed", label=label, color=line.get_color(), marker=None)
        retrains = part[part["retrained"].astype(bool)]
        if len(retrains):
            ax_budget.plot(retrains["num_removed"], np.zeros(len(retrains)), "|", color=line.get_color(),
                           markersize=10, label=f"{label}: a seed's retrain")
    ax_acc.set_xlabel("rows removed")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.legend()
    ax_budget.axhline(1.0, color="k", linestyle=":", linewidth=1)
    ax_budget.set_xlabel("rows removed")
    ax_budget.set_ylabel("residual spent / budget")
    ax_budget.legend(loc="center right")
    eps = ", ".join(f"{e:g}" for e in sorted(table["epsilon"].unique()))
    fig.suptitle(f"{table['dataset'].iloc[0]}, \u03b5 = {eps}; {spread_label(method, n_seeds)}", fontsize=9)
    return fig, (ax_acc, ax_budget)


# ----------------------------------------------------------------------------------------------------
# All figures.

#: name -> (family whose results it reads, plot function)
FIGURES: dict[str, tuple[str, Callable]] = {
    "accuracy": ("accuracy", plot_accuracy),
    "budget": ("budget", plot_budget),
    "bounds": ("bounds", plot_bounds),
    "timing": ("timing", plot_timing),
    "multiclass": ("multiclass", plot_multiclass),
}


def registry() -> dict[str, tuple[str, Callable]]:
    """Every figure: ``FIGURES`` plus each :mod:`certunlearn.families` module that defines ``FAMILY`` and ``plot``.

    The family modules are found by name (a plugin registry), so a new family needs no edit here.
    """
    import importlib
    import pkgutil

    # Loaded by name: the family modules are plugins that sit above this one (they import it).
    _families = importlib.import_module("certunlearn.families")
    found = dict(FIGURES)
    for info in sorted(pkgutil.iter_modules(_families.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{_families.__name__}.{info.name}")
        if hasattr(module, "FAMILY") and callable(getattr(module, "plot", None)):
            found.setdefault(module.FAMILY, (module.FAMILY, module.plot))
    return found


def make_figure(name: str, results_dir, out_dir) -> list[Path]:
    """Builds one figure of :func:`registry` from the results under ``results_dir``; returns [png, pdf]."""
    figs = registry()
    if name not in figs:
        raise ValueError(f"name must be one of {list(figs)}, got {name!r}")
    family, plot = figs[name]
    table = load_results(results_dir, family)
    fig, _ = plot(table)
    return save(fig, out_dir, name)


def make_all(results_dir, out_dir) -> list[Path]:
    """Rebuilds every figure whose family has results under ``results_dir`` (PNG and PDF).

    A family without results is skipped with a warning.

    Raises:
      FileNotFoundError: when no family has results.
    """
    paths, missing = [], []
    for name in registry():
        try:
            paths.extend(make_figure(name, results_dir, out_dir))
        except FileNotFoundError as err:
            missing.append(name)
            warnings.warn(str(err), stacklevel=2)
    if not paths:
        raise FileNotFoundError(f"no results for any figure ({', '.join(missing)}) under {results_dir}")
    return paths


def script_main(name: str, doc: str, argv=None) -> int:
    """The command line of a ``paper_figures/fig_<name>.py`` script: ``RESULTS_DIR [OUT_DIR]``."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if not 1 <= len(argv) <= 2:
        print(doc, file=sys.stderr)
        return 2
    for path in make_figure(name, *argv):
        print(path)
    return 0
