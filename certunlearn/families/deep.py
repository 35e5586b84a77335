"""The ``deep`` family: certified unlearning for a small MLP (Zhang et al., ICML 2024) against retraining.

What one seed of one cell measures. A softplus MLP (:func:`certunlearn.models.mlp`, float64, init key
``jax.random.key(seed)``) is trained on ``n_train`` rows of ``dataset`` (all classes, softmax
cross-entropy, sum convention with ``l2_reg``): ``train_steps`` full-batch Adam steps then up to
``polish_steps`` L-BFGS steps towards a stationary point. Then, for each ``m`` in ``num_removed`` (nested
random sets: the first ``m`` rows of one seeded permutation), the rows are removed by every method:

* ``none``: the trained parameters ``w``, unchanged;
* ``newton``: :func:`certunlearn.deep.unlearn` (damped Newton step, CG on HVPs, ``damping``), noise-free;
* ``newton_lissa``: the same step with stochastic LiSSA (``lissa_depth`` x ``lissa_batch_size`` rows);
* ``newton_noisy_local`` / ``newton_noisy_worst``: the published ``w_u + N(0, sigma^2 I)`` with sigma
  calibrated (analytic Gaussian mechanism, ``epsilon``, ``delta``) on the local bound and on Zhang et
  al.'s worst-case bound (Thm. 3.4 with ``C = ||w||``, see below); NaN when that bound certifies nothing;
* ``finetune``: ``finetune_steps`` Adam steps on the retained rows from ``w``;
* ``retrain_scratch``: the training pipeline rerun on the retained rows from the *same* initialisation;
* ``retrain_warm``: L-BFGS on the retained rows from ``w`` to ``||grad F|| <= retrain_tol``: the local
  minimiser the Newton step approximates, and the reference of every ``distance_to_retrain``.

How "retraining" is defined matters for a non-convex network: the certificate compares with the local
minimiser near ``w_u`` (``retrain_warm``); a retrain from scratch, even from the same initialisation, is
another point (``distance_to_scratch``, and ``distance_to_retrain`` of ``retrain_scratch``, show how far).

Rows (one per method and ``m``): ``method``, ``num_removed``, accuracies ``test_accuracy``,
``forget_accuracy``, ``retain_accuracy``, ``distance_to_retrain`` (to ``retrain_warm``),
``distance_to_scratch``; for the Newton methods ``certified``, ``distance_bound`` (Delta of that row's
bound: ``local`` for ``newton``/``newton_lissa``/``newton_noisy_local``, ``worst-case`` for
``newton_noisy_worst``), ``sigma``, ``epsilon``, ``solver_steps``, ``converged``, ``gradient_residual``,
``min_eigenvalue`` (at ``w_u``), ``hessian_lipschitz`` (estimated), ``worst_case_radius_ok`` (whether the
warm retrain satisfies the worst-case bound's assumption ``||w*|| <= C``); and ``method_seconds`` (the
unlearning update itself: for the Newton methods the gradient and the inverse-HVP solve),
``certificate_seconds`` (the Newton methods' checks: eigenvalue and Lipschitz estimates, exact
residuals), ``retrain_warm_seconds``, ``retrain_scratch_seconds`` (wall time, warm: compilation excluded
by a first call). Every column but those ending in ``_seconds`` is a deterministic function of
``(settings, seed)`` on one machine.

References:
  B. Zhang, Y. Dong, T. Wang, J. Li. Towards Certified Unlearning for Deep Neural Networks. ICML 2024,
  arXiv:2408.00920.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from certunlearn import calibration, data, deep, figures, models

FAMILY = "deep"
METHODS = ("none", "newton", "newton_lissa", "newton_noisy_local", "newton_noisy_worst", "finetune",
           "retrain_scratch", "retrain_warm")
_LABELS = {
    "none": "no unlearning", "newton": "Newton step (CG)", "newton_lissa": "Newton step (LiSSA)",
    "newton_noisy_local": "published, local bound", "newton_noisy_worst": "published, worst-case bound",
    "finetune": "fine-tune", "retrain_scratch": "retrain from same init", "retrain_warm": "retrain (warm, reference)",
}
_STYLE = {"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 7}


@functools.lru_cache(maxsize=8)
def _network(hidden: tuple[int, ...], activation: str, num_outputs: int):
    # One Model per architecture, so that its apply (a jit static argument) compiles once per process.
    return models.mlp(hidden, num_outputs, activation=activation, dtype=jnp.float64)


@functools.lru_cache(maxsize=4)
def _dataset(name, classes, n_train, n_test, data_seed):
    return data.load(name, classes=classes, n_train=n_train, n_test=n_test, seed=data_seed)


def _flat(params):
    return np.asarray(ravel_pytree(params)[0], dtype=np.float64)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def run_seed(settings: Mapping[str, Any], seed: int) -> list[dict[str, Any]]:
    """One seed of one cell: train, then remove each ``num_removed`` by every method (module docstring)."""
    s = dict(settings)
    classes = s.get("classes")
    ds = _dataset(s["dataset"], None if classes is None else tuple(classes), s["n_train"], s.get("n_test"),
                  s.get("data_seed", 0))
    if ds.task != "multiclass":
        raise ValueError(f"the deep family needs a multiclass task (classes=None or 3+ ids), got {classes!r}")
    net = _network(tuple(s["hidden"]), s.get("activation", "softplus"), ds.num_classes)
    X, y = jnp.asarray(ds.X_train), jnp.asarray(ds.y_train)
    X_test, y_test = jnp.asarray(ds.X_test), jnp.asarray(ds.y_test)
    n = X.shape[0]
    l2_reg = float(s["l2_reg"])
    init = net.init(jax.random.key(seed), X[:1])

    def fit(weights, start):
        first = deep.train(net.apply, start, X, y, weights, l2_reg=l2_reg, optimizer="adam",
                           steps=int(s["train_steps"]), learning_rate=float(s["learning_rate"]))
        return deep.train(net.apply, first.params, X, y, weights, l2_reg=l2_reg, optimizer="lbfgs",
                          steps=int(s["polish_steps"]), tol=float(s["polish_tol"])).params

    def warm(weights, start):
        return deep.train(net.apply, start, X, y, weights, l2_reg=l2_reg, optimizer="lbfgs",
                          steps=int(s["retrain_steps"]), tol=float(s["retrain_tol"])).params

    def finetune(weights, start):
        return deep.train(net.apply, start, X, y, weights, l2_reg=l2_reg, optimizer="adam",
                          steps=int(s["finetune_steps"]), learning_rate=float(s["finetune_learning_rate"])).params

    ones = jnp.ones(n, jnp.float64)
    params = fit(ones, init)
    order = np.random.default_rng(seed).permutation(n)
    sizes = [int(m) for m in s["num_removed"]]
    if max(sizes) >= n:
        raise ValueError(f"num_removed must stay below n_train={n}, got {sizes}")
    unlearn_kw = {"l2_reg": l2_reg, "damping": float(s["damping"]), "epsilon": float(s["epsilon"]),
                      "delta": float(s["delta"]), "calibration": s.get("calibration", "analytic"),
                      "lanczos_steps": int(s["lanczos_steps"]), "curvature": s.get("curvature", "auto"),
                      "on_failure": "report"}
    # Compile the unlearning paths once, so that the timings below are warm (training, retraining and
    # fine-tuning share the two optimiser compilations of ``fit``: step counts and masks are traced).
    deep.unlearn(net.apply, params, X, y, order[:1], key=jax.random.key(0), solver="cg", **unlearn_kw)
    deep.unlearn(net.apply, params, X, y, order[:1], key=jax.random.key(0), solver="lissa",
                 lissa_depth=int(s["lissa_depth"]), lissa_batch_size=int(s["lissa_batch_size"]), **unlearn_kw)

    def request(m):
        # One request of m rows (a function, so that the closures below bind this request's values).
        forget = np.sort(order[:m])
        keep = np.ones(n, bool)
        keep[forget] = False
        weights = jnp.asarray(keep, jnp.float64)
        forget_mask = jnp.asarray(~keep, jnp.float64)
        reference, warm_seconds = _timed(lambda: warm(weights, params))
        scratch, scratch_seconds = _timed(lambda: fit(weights, init))
        ref_flat, scratch_flat = _flat(reference), _flat(scratch)
        key = jax.random.key(1000 * seed + m)

        result = deep.unlearn(net.apply, params, X, y, forget, key=key, solver="cg", **unlearn_kw)
        lissa = deep.unlearn(net.apply, params, X, y, forget, key=key, solver="lissa",
                             lissa_depth=int(s["lissa_depth"]), lissa_batch_size=int(s["lissa_batch_size"]),
                             **unlearn_kw)
        newton_seconds, lissa_seconds = result.seconds, lissa.seconds
        tuned, finetune_seconds = _timed(lambda: finetune(weights, params))

        cert = result.certificate
        radius = float(np.linalg.norm(_flat(params)))
        worst = deep.worst_case_distance_bound(
            norm_radius=radius, hessian_lipschitz=cert.hessian_lipschitz,
            damping_shift=cert.damping * cert.num_retained,
            min_eigenvalue=cert.min_eigenvalue, solve_error=cert.solve_error,
            unlearned_norm=float(np.linalg.norm(_flat(result.step_params))))
        worst_ok = cert.solver_converged and math.isfinite(worst)
        radius_ok = bool(np.linalg.norm(ref_flat) <= radius)

        def published(bound_value, certified):
            if not certified:
                return None, math.nan, math.inf
            sigma = calibration.sigma_for_budget(bound_value, epsilon=float(s["epsilon"]), delta=float(s["delta"]),
                                                calibration=s.get("calibration", "analytic"))
            flat, unravel = ravel_pytree(result.step_params)
            noise = jax.random.normal(jax.random.fold_in(key, 7), flat.shape, flat.dtype)
            return unravel(flat + sigma * noise), sigma, float(s["epsilon"])

        noisy_local, sigma_local, eps_local = published(cert.distance_bound, cert.certified)
        noisy_worst, sigma_worst, eps_worst = published(worst, worst_ok)

        def row(method, model_params, seconds, certificate_seconds=0.0, **extra):
            out = {"method": method, "num_removed": m}
            if model_params is None:
                out.update(test_accuracy=math.nan, forget_accuracy=math.nan, retain_accuracy=math.nan,
                           distance_to_retrain=math.nan, distance_to_scratch=math.nan)
            else:
                flat = _flat(model_params)
                out.update(
                    test_accuracy=deep.accuracy(net.apply, model_params, X_test, y_test),
                    forget_accuracy=deep.accuracy(net.apply, model_params, X, y, forget_mask),
                    retain_accuracy=deep.accuracy(net.apply, model_params, X, y, weights),
                    distance_to_retrain=float(np.linalg.norm(flat - ref_flat)),
                    distance_to_scratch=float(np.linalg.norm(flat - scratch_flat)))
            out.update(certified=extra.pop("certified", math.nan), distance_bound=extra.pop("bound", math.nan),
                       sigma=extra.pop("sigma", math.nan), epsilon=extra.pop("epsilon", math.nan),
                       solver_steps=extra.pop("steps", math.nan), converged=extra.pop("converged", math.nan),
                       gradient_residual=extra.pop("rho", math.nan), min_eigenvalue=extra.pop("eig", math.nan),
                       hessian_lipschitz=extra.pop("lip", math.nan), worst_case_radius_ok=radius_ok,
                       method_seconds=seconds, certificate_seconds=certificate_seconds,
                       retrain_warm_seconds=warm_seconds,
                       retrain_scratch_seconds=scratch_seconds)
            assert not extra, extra
            return out

        def newton_extra(c, **more):
            return dict(certified=c.certified, bound=c.distance_bound, steps=c.solver_steps,
                        converged=c.solver_converged, rho=c.gradient_residual, eig=c.min_eigenvalue_unlearned,
                        lip=c.hessian_lipschitz, **more)

        return [
            row("none", params, 0.0),
            row("newton", result.step_params, newton_seconds, result.certificate_seconds, **newton_extra(cert)),
            row("newton_lissa", lissa.step_params, lissa_seconds, lissa.certificate_seconds,
                **newton_extra(lissa.certificate)),
            row("newton_noisy_local", noisy_local, newton_seconds, result.certificate_seconds,
                **newton_extra(cert, sigma=sigma_local, epsilon=eps_local)),
            row("newton_noisy_worst", noisy_worst, newton_seconds, result.certificate_seconds,
                **dict(newton_extra(cert, sigma=sigma_worst, epsilon=eps_worst), certified=worst_ok, bound=worst)),
            row("finetune", tuned, finetune_seconds),
            row("retrain_scratch", scratch, scratch_seconds),
            row("retrain_warm", reference, warm_seconds),
        ]

    return [r for m in sizes for r in request(m)]


def plot(table, *, method: str = "median_iqr"):
    """Three panels per cell (one row per ``l2_reg``, or per grid cell) against the rows removed (log x).

    (a) distance to the warm retrain (the local minimiser the certificate refers to), log scale, with the
    certified Delta of the local bound (dotted; absent when it certified nothing) and of the worst-case
    bound (dash-dot); (b) test accuracy; (c) seconds per request (the update, without the certificate's
    checks) against the two retrains. Lines are the centre over seeds, bands the spread
    (:func:`certunlearn.figures.seed_stats`).
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    table = table.copy()
    table["test_accuracy_pct"] = 100.0 * table["test_accuracy"]
    key = "l2_reg" if "l2_reg" in table and table.groupby("l2_reg")["cell"].nunique().max() == 1 else "cell"
    cells = sorted(table[key].unique()) if key in table else [None]
    colors = {name: f"C{i}" for i, name in enumerate(METHODS)}
    with rc_context(_STYLE):
        fig = Figure(figsize=(13.0, 3.4 * len(cells)), layout="constrained")
        axes = fig.subplots(len(cells), 3, squeeze=False)
    n_seeds = []

    def draw(ax, part, column, *, label, color, linestyle="-", marker="o"):
        stats = figures.seed_stats(part, ["num_removed"], column, method=method)
        if ax.get_yscale() == "log":
            stats = stats[stats["center"] > 0]
        stats = stats[np.isfinite(stats["center"])]
        if stats.empty:
            return
        n_seeds.extend(stats["n_seeds"])
        stats = stats.sort_values("num_removed")
        (line,) = ax.plot(stats["num_removed"], stats["center"], linestyle=linestyle, marker=marker, markersize=3,
                          color=color, label=label)
        ax.fill_between(stats["num_removed"], stats["low"], stats["high"], color=line.get_color(), alpha=0.2,
                        linewidth=0)

    with rc_context(_STYLE):
        for row_axes, cell in zip(axes, cells):
            sub = table if cell is None else table[table[key] == cell]
            dist, acc, secs = row_axes
            for ax in row_axes:
                ax.set_xscale("log")
                ax.set_xlabel("rows removed")
            dist.set_yscale("log")
            secs.set_yscale("log")
            for name in ("none", "newton", "newton_lissa", "newton_noisy_local", "newton_noisy_worst", "finetune",
                         "retrain_scratch"):
                part = sub[sub["method"] == name]
                if not part.empty:
                    draw(dist, part, "distance_to_retrain", label=_LABELS[name], color=colors[name])
            newton = sub[sub["method"] == "newton"]
            if not newton.empty:
                draw(dist, newton, "distance_bound", label="certified Delta, local bound", color=colors["newton"],
                     linestyle=":", marker="^")
            worst = sub[sub["method"] == "newton_noisy_worst"]
            if not worst.empty:
                draw(dist, worst, "distance_bound", label="certified Delta, worst-case (Thm. 3.4)",
                     color=colors["newton_noisy_worst"], linestyle="-.", marker="^")
            label = "" if cell is None else f"{key} = {cell:g}" if isinstance(cell, float) else f"{key} {cell}"
            dist.set_ylabel("||w - w_retrain||  (warm retrain)")
            dist.set_title(f"(a) distance to retraining  {label}")
            for name in METHODS:
                part = sub[sub["method"] == name]
                if not part.empty:
                    draw(acc, part, "test_accuracy_pct", label=_LABELS[name], color=colors[name])
            acc.set_ylabel("test accuracy (%)")
            acc.set_title(f"(b) test accuracy  {label}")
            for name in ("newton", "newton_lissa", "finetune"):
                part = sub[sub["method"] == name]
                if not part.empty:
                    draw(secs, part, "method_seconds", label=_LABELS[name], color=colors[name])
            if not newton.empty:
                draw(secs, newton, "retrain_warm_seconds", label=_LABELS["retrain_warm"],
                     color=colors["retrain_warm"], linestyle="--")
                draw(secs, newton, "retrain_scratch_seconds", label=_LABELS["retrain_scratch"],
                     color=colors["retrain_scratch"], linestyle="--")
            secs.set_ylabel("seconds per request")
            secs.set_title(f"(c) time  {label}")
        axes[0][0].legend(loc="best")
        axes[0][1].legend(loc="best")
        axes[0][2].legend(loc="best")
        first = table.iloc[0]
        fig.suptitle(f"Deep certified unlearning (Zhang et al. 2024): MLP {first.get('hidden', '')} on "
                     f"{first.get('dataset', '')}, n = {first.get('n_train', '')}; "
                     f"{figures.spread_label(method, n_seeds or [0])}")
    return fig, axes
