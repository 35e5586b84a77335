"""The ``audit`` family's figure: certified epsilon against the audited lower bound epsilon_LB.

The cells are run by :mod:`certunlearn.audit_sweep` (``certunlearn audit``); this module holds the
statistics and the plot, registered in :data:`certunlearn.figures.FIGURES` as ``"audit"``.

One panel per audit kind (calibrator, end to end); one colour per audited mechanism (as certified, sigma
halved, no removal) and one marker per calibration (analytic: circle, guo: triangle). Points are the
median over the audit's seeds, bars the interquartile range (:func:`certunlearn.figures.seed_stats`);
points at the same epsilon are spread sideways a little so that they do not hide each other. Above the
diagonal (shaded) an audit refutes its certificate at confidence 1 - alpha; the dotted line is the largest
epsilon_LB that N evaluation samples per side can show (no errors on either side), so a point there means
"as far as N can see".
"""

import math

import numpy as np

from certunlearn import audit, figures

__all__ = ["FAMILY", "audit_stats", "plot", "plot_audit"]

FAMILY = "audit"

_KINDS = {"calibrator": "calibrator: Gaussian mechanism at its budget", "end-to-end": "end to end: remove vs retrain"}
_MARKERS = {"analytic": "o", "guo": "^"}
_STYLE = {"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 7}
# Settings that a grid might vary besides epsilon and calibration; each one that does gets its own series.
_AXES = ("l2_reg", "delta", "alpha", "num_seeds", "calibrator_num_samples", "calibrator_residual_budget", "bound",
         "update", "distinguisher", "loss", "dataset", "classes", "data_seed")


def _mechanism_label(kind: str, mechanism: str) -> str:
    if mechanism == "certified":
        return "\u03c3 as calibrated" if kind == "calibrator" else "Newton removal (certified)"
    if mechanism.startswith("sigma x"):
        return f"\u03c3 \u00d7 {mechanism[len('sigma x'):]} (mis-calibrated)"
    return f"{mechanism} (broken)"


def _max_detectable(part) -> float:
    """The largest epsilon_LB of a test with no errors: ln((1 - delta - u) / u), u = CP upper bound of 0 of N."""
    row = part.iloc[0]
    n = int(min(row["test_n_negative"], row["test_n_positive"]))
    u = audit.clopper_pearson_upper(0, n, float(row["test_bound_alpha"]))
    return math.log((1.0 - float(row["delta"]) - u) / u)


def audit_stats(table, *, method: str = "median_iqr"):
    """epsilon_LB per series and certified epsilon: centre and spread over seeds (``figures.seed_stats``).

    Returns:
      ``(stats, series)``: the statistics (one row per series and epsilon) and the series columns.
    """
    table = table.assign(certified=table["certified_epsilon"].round(6))
    series = ["kind", "mechanism", "calibration"] + [c for c in _AXES if c in table and table[c].nunique() > 1]
    return figures.seed_stats(table, series + ["certified"], "epsilon_lb", method=method), series


def plot_audit(table, *, method: str = "median_iqr"):
    """Audited epsilon_LB (median and IQR over seeds) against the certified epsilon, one panel per kind."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    stats, series = audit_stats(table, method=method)
    kinds = [k for k in _KINDS if k in set(stats["kind"])]
    with rc_context(_STYLE):
        fig = Figure(figsize=(4.3 * len(kinds), 4.6), layout="constrained")
        axes = fig.subplots(1, len(kinds), squeeze=False, sharey=True)[0]
    top = max(float(stats["certified"].max()), float(np.nanmax(stats["high"])))
    lim = top * 1.08 + 0.05
    colors = {}
    for ax, kind in zip(axes, kinds):
        part = stats[stats["kind"] == kind]
        groups = list(part.groupby(series, sort=True))
        step = 0.012 * lim
        for i, (key, group) in enumerate(groups):
            values = dict(zip(series, key))
            mechanism, calibration = values["mechanism"], values["calibration"]
            extra = ", ".join(f"{c} = {values[c]}" for c in series[3:])
            label = f"{_mechanism_label(kind, mechanism)}, {calibration}" + (f", {extra}" if extra else "")
            color = colors.setdefault((mechanism, extra), f"C{len(colors)}")
            x = group["certified"] + (i - (len(groups) - 1) / 2) * step
            ax.errorbar(x, group["center"], yerr=[group["center"] - group["low"], group["high"] - group["center"]],
                        fmt=_MARKERS.get(calibration, "s"), color=color, markersize=4, capsize=2, linewidth=1,
                        label=label)
        grid = np.linspace(0.0, lim, 2)
        ax.plot(grid, grid, color="k", linestyle="--", linewidth=1, label="\u03b5_LB = certified \u03b5")
        ax.fill_between(grid, grid, lim, color="tab:red", alpha=0.06, linewidth=0)
        ceiling = _max_detectable(table[table["kind"] == kind])
        if ceiling < lim:
            n = int(table.loc[table["kind"] == kind, "num_samples"].iloc[0])
            ax.axhline(ceiling, color="grey", linestyle=":", linewidth=1, label=f"largest \u03b5_LB N = {n:,} can show")
        ax.set_xlim(0.0, lim)
        ax.set_ylim(-0.05 * lim, lim)
        ax.set_xlabel("certified \u03b5")
        ax.set_title(_KINDS[kind], fontsize=8)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    axes[0].set_ylabel("audited \u03b5_LB")
    sizes = "; ".join(
        f"{k}: N = {int(table.loc[table['kind'] == k, 'num_samples'].iloc[0]):,} per side" for k in kinds)
    first = table.iloc[0]
    task = f"{first['dataset']} {first['classes']}" if "dataset" in table else ""
    fig.suptitle(f"{task}, \u03b4 = {first['delta']:g}, {1 - first['alpha']:.0%} confidence ({sizes}); "
                 f"{figures.spread_label(method, stats['n_seeds'])}", fontsize=8)
    return fig, (axes[0] if len(kinds) == 1 else axes)



plot = plot_audit
