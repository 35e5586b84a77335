"""The ``certunlearn demo``: certified removals one at a time, compared with retraining from scratch.

:func:`run_demo` loads a binary task, fits a certified logistic model (sum convention, THEORY.md Sec. 1),
removes ``num_removals`` training rows one at a time in a seeded random order with
:func:`certunlearn.remove` (remove-one neighbouring relation per step; Guo's accumulation of residual
bounds under one noise draw, THEORY.md Sec. 5) and retrains automatically when the residual budget runs out.
Every few removals it also retrains from scratch on the retained rows and measures how far the unlearned
parameters are from that exact retrain.

Default hyper-parameters per data set (``DATASET_DEFAULTS``), chosen by running the demo with seeds 0-5
at (epsilon, delta) = (1, 1e-4), analytic calibration, data-dependent bound, the library's default solver:

* digits 3-vs-8 (285 x 64): ``l2_reg=1e-2`` (lambda), ``sigma=0.1``, so the residual budget is 0.0314.
  Test accuracy 0.97. A step's bound is heavy-tailed, median ~8e-4 with the cached solver (~2.5e-4 with
  ``solver="cholesky"``, whose remainder has no drift term), so 100 removals take 5-6 retrains, 15-30
  certified removals apart (2-3 with Cholesky). ``sigma=0.2`` halves the retrains; ``l2_reg=1e-3``
  retrains about twice as often; accuracy is 0.96-0.99 throughout.
* fashion-mnist 2-vs-4 (pullover vs coat, 12,000 x 784): ``l2_reg=1e-3``, ``sigma=0.05`` (budget 0.0157).
  Accuracy 0.84 (1e-2: 0.79; 1e-4: 0.85, but step bounds ~5x larger and
  slower training); 4 retrains in 100 removals. A full fit takes seconds (Newton on 784 parameters over
  12,000 rows), so the retrain-from-scratch comparison runs every 25 removals instead of 10.
* mnist and synthetic: the same choices as fashion-mnist and digits respectively.

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models.
  ICML 2020, arXiv:1911.03030 (Alg. 1, Alg. 2, Cor. 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATASET_DEFAULTS", "DatasetDefaults", "run_demo"]


@dataclasses.dataclass(frozen=True)
class DatasetDefaults:
    """Demo defaults for one data set (see the module docstring for how they were chosen).

    Attributes:
      classes: the (positive, negative) class pair.
      l2_reg: lambda of the regulariser ``lambda n/2 ||w||^2``.
      sigma: standard deviation of the loss perturbation b.
      retrain_every: removals between comparisons with a model retrained from scratch.
    """

    classes: tuple[int, int]
    l2_reg: float
    sigma: float
    retrain_every: int


DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    "digits": DatasetDefaults(classes=(3, 8), l2_reg=1e-2, sigma=0.1, retrain_every=10),
    "fashion-mnist": DatasetDefaults(classes=(2, 4), l2_reg=1e-3, sigma=0.05, retrain_every=25),
    "mnist": DatasetDefaults(classes=(3, 8), l2_reg=1e-3, sigma=0.05, retrain_every=25),
    "synthetic": DatasetDefaults(classes=(0, 1), l2_reg=1e-2, sigma=0.1, retrain_every=10),
}

_PACKAGES = ("certunlearn", "jax", "jaxlib", "numpy", "scipy", "optax", "dp-accounting", "matplotlib")
_TIMED_RETRAIN_TAG = 1  # fold_in tag of the timed full retrain's key: an independent noise draw


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _json_ready(obj: Any) -> Any:
    """Plain JSON: NumPy scalars to Python, tuples to lists, non-finite floats to null."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite_or_none(obj)
    return obj


def _atomic_write(path: Path, payload: bytes) -> None:
    """Writes ``payload`` to a temporary file next to ``path``, then renames it into place."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # os.open with mode 0o666 honours the umask, unlike tempfile.mkstemp (always 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_state() -> dict[str, Any]:
    """The commit of the checkout certunlearn runs from, and whether tracked files differ from it."""
    where = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d.platform)} x{jax.device_count()}"


def _plot(records: list[dict[str, Any]], config: dict[str, Any], acc_initial: float) -> bytes:
    """The two-panel demo figure as PNG bytes (Agg canvas; no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([r["step"] for r in records])
    spent = np.array([r["residual_spent"] for r in records], dtype=float)
    budget = records[0]["residual_budget"] if records else math.nan
    retrains = [r["step"] for r in records if r["retrained"]]
    checkpoints = [r for r in records if r["acc_retrained"] is not None]

    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.step(steps, spent, where="post", color="C0", label="residual spent (beta)")
    ax1.axhline(budget, color="k", ls="--", lw=1, label=f"budget {budget:.3g}")
    for i, s in enumerate(retrains):
        ax1.axvline(s, color="C3", ls=":", lw=1, label="retrain (fresh noise)" if i == 0 else None)
    ax1.set(xlabel="removals", ylabel="gradient residual bound",
            title=f"Residual budget at (epsilon={config['epsilon']:g}, delta={config['delta']:g})")
    ax1.set_ylim(0, 1.3 * budget if math.isfinite(budget) and budget > 0 else None)
    ax1.legend(loc="upper center", ncol=3, fontsize=8)

    acc = np.array([acc_initial] + [r["acc_unlearned"] for r in records], dtype=float)
    ax2.plot(np.concatenate([[0], steps]), acc, color="C0", label="unlearned (Newton removal)")
    ax2.plot([r["step"] for r in checkpoints], [r["acc_retrained"] for r in checkpoints], "o",
             color="C1", mfc="none", label="retrained from scratch")
    ax2.set(xlabel="removals", ylabel="test accuracy", title="Test accuracy")
    ax2.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"certunlearn demo: {config['dataset']} {config['classes'][0]} vs {config['classes'][1]}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


_HEADER = (
    f"{'removals':>8} {'residual spent':>14} {'budget':>6} {'epsilon':>8} {'acc unlearned':>13} "
    f"{'acc retrained':>13} {'|w - w_retrain|':>15} {'ms/removal':>10}"
)


def _row(r: dict[str, Any]) -> str:
    note = "  retrained" if r["retrained"] else ""
    return (
        f"{r['step']:>8d} {r['residual_spent']:>14.3e} {100 * r['residual_spent'] / r['residual_budget']:>5.1f}% "
        f"{_fmt(r['epsilon'], '8.4f')} {r['acc_unlearned']:>13.4f} {_fmt(r['acc_retrained'], '13.4f'):>13} "
        f"{_fmt(r['param_distance'], '15.3e'):>15} {1e3 * r['seconds']:>10.1f}{note}"
    )


def run_demo(
    *,
    dataset: str = "digits",
    classes: Sequence[int] | None = None,
    num_removals: int = 100,
    l2_reg: float | None = None,
    epsilon: float = 1.0,
    delta: float = 1e-4,
    sigma: float | None = None,
    residual_budget: float | None = None,
    calibration: str = "analytic",
    bound: str = "data-dependent",
    seed: int = 0,
    out: str | os.PathLike[str] = "runs/demo",
    dtype: str = "float64",
    progress: bool = True,
    retrain_every: int | None = None,
    stream=None,
) -> dict[str, Any]:
    """Removes rows one at a time from a certified logistic model and compares with retraining.

    Fits ``L_b(w) = sum_i log(1 + exp(-y_i w^T x_i)) + (lambda n/2)||w||^2 + b^T w`` (sum convention,
    ``lambda = l2_reg``, ``b ~ N(0, sigma^2 I)``), then calls :func:`certunlearn.remove` once per row
    (remove-one; residual bounds accumulate under one noise draw, Guo et al. Alg. 2), retraining with
    fresh noise when the budget runs out. Every ``retrain_every`` removals and after the last, a model is
    fitted from scratch on the retained rows with the same hyper-parameters *and the same noise draw* as
    the unlearned model (its key is reproduced from ``seed``), so ``param_distance`` is the error of the
    Newton removal itself; the summary's ``noise_distance`` (two fits on the full data with independent
    noise draws) gives its scale.

    Args:
      dataset: a name of :func:`certunlearn.data.available`.
      classes: the (positive, negative) class pair; None: the data set's default (``DATASET_DEFAULTS``).
      num_removals: rows to remove, one at a time (fewer than the training rows).
      l2_reg: lambda; None: the data set's default.
      epsilon, delta: the target certificate.
      sigma, residual_budget: at most one; with neither, the data set's default sigma.
      calibration: "analytic" or "guo". bound: "worst-case", "data-dependent" or "exact".
      seed: seeds the noise (``jax.random.key(seed)``), the removal order and the data split.
      out: output folder for ``results.json`` and ``demo.png`` (created if needed).
      dtype: "float64" or "float32" for training and removal (certificates are float64).
      progress: show a tqdm progress bar (on stderr, only when it is a terminal).
      retrain_every: removals between retrain-from-scratch comparisons; None: the data set's default.
      stream: where the table and summary are printed (default ``sys.stdout``).

    Returns:
      The results dict written to ``out/results.json``; non-finite numbers are stored as ``None``.

      * ``config``: the arguments, with the defaults and ``sigma``/``residual_budget`` resolved.
      * ``records``: one dict per removal: ``step``, ``index`` (training row), ``residual_bound``,
        ``residual_spent``, ``residual_budget``, ``epsilon`` (certified for the spent residual),
        ``retrained``, ``exact_residual`` (``||grad L_b||`` of the published model), ``seconds`` (Newton
        step, certificate and any retrain), ``retrain_seconds``, ``acc_unlearned``, and at checkpoints
        ``acc_retrained`` and ``param_distance`` (else None).
      * ``summary``: ``removals``, ``retrains``, ``retrain_steps``, the final ``certificate``,
        ``median_removal_seconds`` (certified removals), ``mean_seconds_per_removal`` (all, including the
        first call's compilation and retrains), ``retrain_seconds`` (one warm full fit), ``speedup``
        (their ratio), accuracies, ``param_distance``, ``noise_distance``, ``max_exact_over_spent``
        (<= 1 when the bounds hold), ``versions``, ``git``, ``device``, ``wall_seconds``.

    Raises:
      ValueError: an invalid argument (the message names it).
      certunlearn.CertificationError: training cannot be certified (e.g. a budget below the training
        residual).
    """
    import jax
    from tqdm import tqdm

    import certunlearn as cu

    stream = sys.stdout if stream is None else stream
    wall_start = time.perf_counter()
    if dataset not in DATASET_DEFAULTS:
        raise ValueError(f"dataset must be one of {list(DATASET_DEFAULTS)}, got {dataset!r}")
    defaults = DATASET_DEFAULTS[dataset]
    classes = defaults.classes if classes is None else tuple(classes)
    if len(classes) != 2:
        raise ValueError(f"classes must name exactly 2 classes for the binary demo, got {classes!r}")
    num_removals = _positive_int("num_removals", num_removals)
    retrain_every = _positive_int("retrain_every", defaults.retrain_every if retrain_every is None else retrain_every)
    l2_reg = defaults.l2_reg if l2_reg is None else l2_reg
    if sigma is None and residual_budget is None:
        sigma = defaults.sigma
    # Validate the privacy arguments before loading data; fit() checks them again.
    cu.calibrate(epsilon=epsilon, delta=delta, sigma=sigma, residual_budget=residual_budget, calibration=calibration)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out)

    ds = cu.load(dataset, classes=classes, seed=int(seed), dtype=dtype)
    X, y, X_test, y_test = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    n, d = X.shape
    if num_removals >= n:
        raise ValueError(f"num_removals must be < {n} (the training rows of {dataset} {classes}), got {num_removals}")

    hyper = {"loss": "logistic", "l2_reg": l2_reg, "epsilon": epsilon, "delta": delta,
             "calibration": calibration, "bound": bound, "dtype": dtype}
    key = jax.random.key(int(seed))
    start = time.perf_counter()
    model = cu.fit(X, y, sigma=sigma, residual_budget=residual_budget, key=key, **hyper)
    first_fit_seconds = time.perf_counter() - start
    sigma = model.calibration.sigma
    hyper["sigma"] = sigma
    acc_initial = model.score(X_test, y_test)

    # A full retrain from scratch with an independent noise draw, timed warm (the first fit compiled for
    # these shapes); best of 3 when one takes under a second.
    reference_key = jax.random.fold_in(key, _TIMED_RETRAIN_TAG)
    retrain_seconds = math.inf
    for _ in range(3):
        start = time.perf_counter()
        reference = cu.fit(X, y, key=reference_key, **hyper)
        jax.block_until_ready(reference.params)
        retrain_seconds = min(retrain_seconds, time.perf_counter() - start)
        if retrain_seconds >= 1.0:
            break
    noise_distance = float(np.linalg.norm(np.asarray(reference.params, np.float64) - np.asarray(model.params)))
    del reference

    config = {
        "dataset": dataset, "classes": list(classes), "num_removals": num_removals, "l2_reg": l2_reg,
        "epsilon": epsilon, "delta": delta, "sigma": sigma, "residual_budget": model.calibration.residual_budget,
        "calibration": calibration, "bound": bound, "seed": int(seed), "dtype": dtype,
        "retrain_every": retrain_every, "loss": "logistic", "update": "guo", "n_train": n,
        "n_test": int(X_test.shape[0]), "n_features": d, "out": str(out),
    }
    print(
        f"certunlearn demo: {dataset} {classes[0]} vs {classes[1]}, {n} train / {X_test.shape[0]} test rows, "
        f"d={d}; logistic, l2_reg={l2_reg:g}, sigma={sigma:.4g} -> residual budget "
        f"{model.calibration.residual_budget:.4g} at (epsilon={epsilon:g}, delta={delta:g}) "
        f"[{calibration} calibration, {bound} bound, {dtype}]; test accuracy {acc_initial:.4f}",
        file=stream,
    )
    print(_HEADER, file=stream)

    order = np.random.default_rng(int(seed)).permutation(n)[:num_removals]
    noise_key = key  # the key whose split drew the current noise; a retrain draws from model.key
    records: list[dict[str, Any]] = []
    show_bar = progress and getattr(sys.stderr, "isatty", lambda: False)()
    with tqdm(total=num_removals, desc="removals", unit="row", disable=not show_bar, file=sys.stderr,
              leave=False) as bar:
        for step, index in enumerate(order, start=1):
            previous_key = model.key
            model, report = cu.remove(model, int(index))
            if report.retrained:
                noise_key = previous_key
            certificate = model.certificate()
            record = {
                "step": step,
                "index": int(index),
                "residual_bound": report.residual_bound,
                "residual_spent": report.residual_spent,
                "residual_budget": report.residual_budget,
                "epsilon": certificate.epsilon,
                "retrained": bool(report.retrained),
                "exact_residual": model.exact_residual(),
                "seconds": report.seconds + report.retrain_seconds,
                "retrain_seconds": report.retrain_seconds,
                "acc_unlearned": model.score(X_test, y_test),
                "acc_retrained": None,
                "param_distance": None,
            }
            if step % retrain_every == 0 or step == num_removals:
                keep = model.retained
                # The bound changes only the certificate, never the parameters; "worst-case" skips the
                # O(d^3) data-norm eigendecomposition that this uncertified comparison does not need.
                retrained = cu.fit(X[keep], y[keep], key=noise_key, **{**hyper, "bound": "worst-case"})
                record["acc_retrained"] = retrained.score(X_test, y_test)
                diff = np.asarray(model.params, np.float64) - np.asarray(retrained.params, np.float64)
                record["param_distance"] = float(np.linalg.norm(diff))
            records.append(record)
            if record["acc_retrained"] is not None or record["retrained"]:
                bar.write(_row(record), file=stream)
            bar.set_postfix(spent=f"{100 * report.residual_spent / report.residual_budget:.0f}%",
                            retrains=certificate.retrains, refresh=False)
            bar.update()

    certified = [r["seconds"] for r in records if not r["retrained"]]
    median_removal = statistics.median(certified) if certified else math.nan
    final = records[-1]
    retrain_steps = [r["step"] for r in records if r["retrained"]]
    summary = {
        "removals": num_removals,
        "retrains": len(retrain_steps),
        "retrain_steps": retrain_steps,
        "certificate": model.certificate().as_dict(),
        "median_removal_seconds": median_removal,
        "mean_seconds_per_removal": sum(r["seconds"] for r in records) / num_removals,
        "retrain_seconds": retrain_seconds,
        "first_fit_seconds": first_fit_seconds,
        "speedup": retrain_seconds / median_removal if median_removal > 0 else math.nan,
        "acc_initial": acc_initial,
        "acc_unlearned": final["acc_unlearned"],
        "acc_retrained": final["acc_retrained"],
        "param_distance": final["param_distance"],
        "noise_distance": noise_distance,
        # <= 1 whenever the bounds are sound: the exact residual never exceeds the residual spent.
        "max_exact_over_spent": max(r["exact_residual"] / max(r["residual_spent"], 1e-300) for r in records),
        "versions": _versions(),
        "git": _git_state(),
        "device": _device(),
    }
    results = _json_ready({"config": config, "records": records, "summary": summary})

    out.mkdir(parents=True, exist_ok=True)
    summary_wall = time.perf_counter() - wall_start
    results["summary"]["wall_seconds"] = summary_wall
    _atomic_write(out / "results.json", (json.dumps(results, indent=1, allow_nan=False) + "\n").encode())
    _atomic_write(out / "demo.png", _plot(results["records"], results["config"], acc_initial))

    cert = model.certificate()
    print(
        f"{num_removals} removals, {len(retrain_steps)} retrains"
        f"{' (at ' + ', '.join(map(str, retrain_steps)) + ')' if retrain_steps else ''}; "
        f"final certificate ({cert.epsilon:.3g}, {cert.delta:g}); median removal "
        f"{1e3 * median_removal:.1f} ms vs full retrain {1e3 * retrain_seconds:.0f} ms "
        f"({summary['speedup']:.1f}x); test accuracy {final['acc_unlearned']:.4f} unlearned vs "
        f"{final['acc_retrained']:.4f} retrained; |w - w_retrain| = {final['param_distance']:.2e} "
        f"(independent noise draws: {noise_distance:.2e}); wrote {out / 'results.json'}, {out / 'demo.png'} "
        f"in {summary_wall:.1f} s",
        file=stream,
    )
    return results
