"""Removal benchmarks: latency of each removal path against retraining, on real data.

    python -m benchmarks.removal            # full tables (Fashion-MNIST binary + softmax, scaling sweep)
    python -m benchmarks.removal --quick    # a few minutes: fewer removals, no softmax at full size

Prints markdown tables and writes them, with a CSV per table, to ``--out`` (default
``benchmarks/results``). Every ratio in a table is measured in the same run, on the same machine and
dtype. Timings are wall-clock medians over a sequence of single removals after a warm-up removal (which
compiles, and builds caches); "first" is that warm-up. Never run by pytest.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

import certunlearn as cu
from certunlearn import hessian


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, repeats=3):
    best = np.inf
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best, out


def _table(title, rows, columns):
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _sequence(model, order, *, label, reference=None):
    """Removes ``order`` one at a time; returns latency stats and the final model.

    ``reference``: a callable timed right before each removal (not counted in the removal's time), so
    that a ratio of the two medians is immune to the machine's speed drifting during the run.
    """
    times, retrains, steps, ref_times = [], 0, [], []
    start_all = time.perf_counter()
    for i in order:
        if reference is not None:
            start = time.perf_counter()
            jax.block_until_ready(reference())
            ref_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        model, report = cu.remove(model, int(i))
        times.append(time.perf_counter() - start)
        retrains += report.retrained
        steps.append(report.solver_steps)
    total = time.perf_counter() - start_all - sum(ref_times)
    t = np.asarray(times[1:]) if len(times) > 1 else np.asarray(times)
    extra = {}
    if ref_times:
        extra["reference_ms"] = float(np.median(ref_times[1:] or ref_times) * 1e3)
    return model, dict(**extra,
        path=label,
        removals=len(order),
        first_ms=times[0] * 1e3,
        median_ms=float(np.median(t) * 1e3),
        p90_ms=float(np.percentile(t, 90) * 1e3),
        removals_per_s=len(order) / total,
        retrains=retrains,
        solver_steps=float(np.median(steps)),
        peak_rss_mb=_rss_mb(),
    )


def binary_table(args, dtype):
    ds = cu.load("fashion-mnist", classes=(2, 4), dtype=dtype)
    X, y = ds.X_train, ds.y_train
    n, d = X.shape
    common = dict(l2_reg=1e-3, sigma=args.sigma, key=jax.random.key(0), dtype=dtype)
    fit_newton, model = _time(lambda: cu.fit(X, y, **common, solver="cholesky"), repeats=2)
    fit_lbfgs, _ = _time(lambda: cu.fit(X, y, **common, solver="cholesky", train_method="lbfgs",
                                       max_steps=5000), repeats=1)
    Xj = jnp.asarray(X)
    s = jnp.asarray(np.random.default_rng(0).uniform(0, 0.25, n), Xj.dtype)
    bare = jax.jit(lambda X, s: (X * s[:, None]).T @ X)
    t_bare, _ = _time(lambda: bare(Xj, s), repeats=5)
    hvp = jax.jit(lambda w, X, y, m, v: hessian.glm_hvp(w, X, y, m, v, loss="logistic", l2_reg=1e-3))
    ones = jnp.ones(n, Xj.dtype)
    t_hvp, _ = _time(lambda: hvp(model.params, Xj, jnp.asarray(y, Xj.dtype), ones, model.params), repeats=5)

    order = np.random.default_rng(1).permutation(n)
    rows = []
    for solver, count in (("cholesky", args.exact_removals), ("cached", args.cached_removals),
                          ("cg", args.exact_removals)):
        m = cu.fit(X, y, **common, solver=solver)
        # The exact path is compared with the bare product timed alternately with it (its floor).
        reference = (lambda: bare(Xj, s)) if solver == "cholesky" else None
        _, stats = _sequence(m, order[:count], label=solver, reference=reference)
        stats["speedup_vs_newton_fit"] = fit_newton / (stats["median_ms"] / 1e3)
        stats["speedup_vs_lbfgs_fit"] = fit_lbfgs / (stats["median_ms"] / 1e3)
        stats["over_bare_xtsx"] = stats["median_ms"] / stats.pop("reference_ms", t_bare * 1e3)
        rows.append(stats)
    header = (f"Fashion-MNIST pullover vs coat, n={n}, d={d}, {dtype}, l2_reg=1e-3, sigma={args.sigma}, "
              f"data-dependent bound. Newton fit {fit_newton:.3g} s, L-BFGS fit {fit_lbfgs:.3g} s, "
              f"bare X^T S X {t_bare * 1e3:.3g} ms, one HVP {t_hvp * 1e3:.3g} ms")
    extra = dict(fit_newton_s=fit_newton, fit_lbfgs_s=fit_lbfgs, bare_xtsx_ms=t_bare * 1e3, hvp_ms=t_hvp * 1e3)
    return header, rows, extra, (X, y, common, order)


def long_sequence_table(args, data):
    """1,000 certified single removals with the cached path; Guo's Delta vs the full-gradient step."""
    X, y, common, order = data
    fit_s, _ = _time(lambda: cu.fit(X, y, **common, solver="cached"), repeats=2)
    rows = []
    for update, ratio in (("guo", np.inf), ("guo", 20.0), ("gradient", np.inf)):
        m = cu.fit(X, y, **common, solver="cached", update=update, cache_refresh_ratio=ratio)
        first_retrain = None
        start = time.perf_counter()
        retrains = 0
        for k, i in enumerate(order[: args.long_removals]):
            m, report = cu.remove(m, int(i))
            if report.retrained:
                retrains += 1
                first_retrain = first_retrain or k + 1
        total = time.perf_counter() - start
        rows.append(dict(update=update, refresh_ratio=ratio, removals=args.long_removals, total_s=total,
                         per_removal_ms=total / args.long_removals * 1e3, retrain_s=fit_s,
                         hundred_removals_over_retrain=100 * total / args.long_removals / fit_s,
                         certified_removals_per_s=args.long_removals / total, retrains=retrains,
                         removals_before_first_retrain=first_retrain or f">{args.long_removals}",
                         final_epsilon=m.certificate().epsilon))
    return rows


def softmax_table(args):
    ds = cu.load("fashion-mnist")
    X, y = ds.X_train, ds.y_train
    if args.quick:
        X, y = X[:12000], y[:12000]
    n, d = X.shape
    rows = []
    common = dict(loss="softmax", l2_reg=1e-3, sigma=args.sigma, key=jax.random.key(0), solver="cg")
    for dtype in ("float64", "float32"):
        t_fit, model = _time(lambda: cu.fit(X, y, dtype=dtype, **common, tol=1e-6 if dtype == "float64" else 1e-3 * np.sqrt(len(y))),
                             repeats=1)
        for pre in ("subsample", "kronecker", "none"):
            # The same trained model, with only the removal's preconditioner changed.
            m = dataclasses.replace(model, config=dataclasses.replace(model.config, cg_preconditioner=pre))
            _, stats = _sequence(m, np.arange(args.softmax_removals + 1), label=f"cg/{pre}")
            stats.update(dtype=dtype, fit_s=t_fit, speedup_vs_fit=t_fit / (stats["median_ms"] / 1e3))
            rows.append(stats)
    return f"Fashion-MNIST 10 classes, softmax, n={n}, d={d}, p={d * 10}", rows


def scaling_table(args):
    rows = []
    grid = [(n, 200) for n in args.scaling_n] + [(4000, d) for d in args.scaling_d]
    for n, d in grid:
        ds = cu.load("synthetic", n_train=n, n_test=10, n_features=d, classes=(0, 1), seed=0)
        X, y = ds.X_train, ds.y_train
        for solver in ("cholesky", "cached", "cg"):
            m = cu.fit(X, y, l2_reg=1e-3, sigma=args.sigma, solver=solver, key=jax.random.key(0))
            _, stats = _sequence(m, np.arange(12), label=solver)
            rows.append(dict(n=n, d=d, path=solver, median_ms=stats["median_ms"]))
    fits = []
    for solver in ("cholesky", "cached", "cg"):
        for axis, values in (("n", args.scaling_n), ("d", args.scaling_d)):
            sel = [r for r in rows if r["path"] == solver and ((axis == "n" and r["d"] == 200 and r["n"] in values)
                                                               or (axis == "d" and r["n"] == 4000 and r["d"] in values))]
            sel = sorted({r[axis]: r for r in sel}.values(), key=lambda r: r[axis])
            if len(sel) >= 2:
                slope = np.polyfit(np.log([r[axis] for r in sel]), np.log([r["median_ms"] for r in sel]), 1)[0]
                fits.append(dict(path=solver, axis=axis, fitted_exponent=float(slope)))
    return rows, fits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a short run for a lent accelerator (minutes)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--sigma", type=float, default=10.0)
    parser.add_argument("--skip-softmax", action="store_true")
    args = parser.parse_args(argv)
    args.exact_removals = 6 if args.quick else 20
    args.cached_removals = 50 if args.quick else 200
    args.long_removals = 200 if args.quick else 1000
    args.softmax_removals = 2 if args.quick else 5
    args.scaling_n = [2000, 4000, 8000] if args.quick else [2000, 4000, 8000, 16000]
    args.scaling_d = [100, 200, 400] if args.quick else [100, 200, 400, 800]
    if args.tiny:
        args.exact_removals, args.cached_removals, args.long_removals, args.softmax_removals = 4, 20, 100, 3
        args.scaling_n, args.scaling_d = [2000, 8000], [100, 400]
    os.makedirs(args.out, exist_ok=True)
    import pandas as pd

    env = (f"{platform.node()} | {os.cpu_count()} CPUs | jax {jax.__version__} | {jax.devices()[0].platform} | "
           f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    report = [f"# certunlearn removal benchmark\n\n{env}\n"]

    def emit(name, title, rows, columns):
        text = _table(title, rows, columns)
        print(text, flush=True)
        report.append(text)
        pd.DataFrame(rows).to_csv(os.path.join(args.out, f"{name}.csv"), index=False)

    cols = ["path", "removals", "first_ms", "median_ms", "p90_ms", "removals_per_s", "retrains", "solver_steps",
            "speedup_vs_newton_fit", "speedup_vs_lbfgs_fit", "over_bare_xtsx", "peak_rss_mb"]
    data = None
    for dtype in ("float64", "float32"):
        header, rows, extra, d = binary_table(args, dtype)
        data = data or d
        emit(f"binary_{dtype}", header, rows, cols)
    emit("long_sequence", f"{args.long_removals} sequential certified removals, cached path, float64",
         long_sequence_table(args, data),
         ["update", "refresh_ratio", "removals", "total_s", "per_removal_ms", "retrain_s",
          "hundred_removals_over_retrain", "certified_removals_per_s", "retrains", "removals_before_first_retrain",
          "final_epsilon"])
    if not args.skip_softmax:
        title, rows = softmax_table(args)
        emit("softmax", title, rows, ["path", "dtype", "removals", "first_ms", "median_ms", "p90_ms", "solver_steps",
                                      "fit_s", "speedup_vs_fit", "peak_rss_mb"])
    rows, fits = scaling_table(args)
    emit("scaling", "Scaling: median ms per removal on synthetic data (n varies at d=200; d varies at n=4000)",
         rows, ["n", "d", "path", "median_ms"])
    emit("scaling_fit", "Fitted exponent of the per-removal cost (log-log slope)", fits,
         ["path", "axis", "fitted_exponent"])
    tmp = os.path.join(args.out, ".report.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(report))
    os.replace(tmp, os.path.join(args.out, "report.md"))
    print(f"wrote {args.out}/report.md")


if __name__ == "__main__":
    main()
