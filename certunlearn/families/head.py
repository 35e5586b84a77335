"""Family ``head``: a certified softmax head on a frozen feature extractor vs raw pixels (Guo et al. settings 2/3).

One cell = one extractor (``"none"`` = raw pixels, ``"mlp"``, ``"cnn"``), one ``l2_reg`` and one
``sigma``. Per seed: the training rows of the data set are split into a public part (the extractor's
training set, :func:`certunlearn.head.split_public`, preprocessed with public statistics only) and a
private part (the certified head's rows); the head is :func:`certunlearn.api.fit` on the L2-normalised
features; then up to ``num_removals`` random single rows are removed with :func:`certunlearn.api.remove`
until the first retrain. Measured: test accuracy of the certified head (at fit, after the removals, and of
the head retrained on the retained rows with the same noise), removals served before the first retrain,
wall time of a removal vs retraining the head, and the distance of the unlearned head to the retrained
one. With ``dp_noise_multiplier`` set, the extractor is trained with DP-SGD on the *private* rows instead
and the pipeline's composed (epsilon, delta) is reported.

One row per seed; columns ending in ``_seconds`` are wall times, everything else is a deterministic
function of (settings, seed).
"""

from __future__ import annotations

import functools
import math
import time

import jax
import numpy as np

from certunlearn import api, data, figures, head, models

FAMILY = "head"
EXTRACTORS = ("none", "mlp", "cnn")


@functools.lru_cache(maxsize=16)
def _model(kind: str, hidden: tuple, channels: tuple, cnn_hidden: int, image_shape: tuple, num_classes: int):
    # Cached so that every seed of a cell reuses the compiled extractor (the jit cache is keyed on it).
    if kind == "mlp":
        return models.mlp(hidden, num_classes)
    return models.cnn(channels, num_classes, image_shape=image_shape, hidden=cnn_hidden)


@functools.lru_cache(maxsize=2)
def _load(name, classes, n_train, n_test, seed):
    # Read-only arrays, so sharing them between cells is safe; decompressing the IDX files costs seconds.
    return data.load(name, classes=classes, n_train=n_train, n_test=n_test, seed=seed, normalize=False)


def _image_shape(d: int) -> tuple[int, int]:
    side = int(round(math.sqrt(d)))
    if side * side != d:
        raise ValueError(f"extractor='cnn' needs square images; rows have {d} features")
    return side, side


# Settings that determine the extractor and its features; cells that differ only in the head's settings
# (l2_reg, sigma, epsilon, ...) share it within one process (the results are identical, only faster).
_EXTRACTOR_SETTINGS = ("dataset", "classes", "n_train", "n_test", "data_seed", "public_fraction", "max_public",
                       "extractor", "hidden", "channels", "cnn_hidden", "extractor_steps", "batch_size",
                       "learning_rate", "dp_noise_multiplier", "dp_clip_norm", "dp_delta")
_FEATURES: dict = {}
_CACHE_SIZE = 8


def _train_features(s, dataset, split, extractor, dp_z, key):
    start = time.perf_counter()
    model = _model(extractor, tuple(s.get("hidden", (256,))), tuple(s.get("channels", (16, 32))),
                   int(s.get("cnn_hidden", 128)), _image_shape(dataset.n_features), dataset.num_classes)
    dp = None if dp_z is None else head.DPSGD(clip_norm=float(s.get("dp_clip_norm", 1.0)),
                                              noise_multiplier=float(dp_z), delta=float(s.get("dp_delta", 1e-5)))
    X_ex, y_ex = (split.public_X, split.public_y) if dp is None else (split.private_X, split.private_y)
    ex = head.train_extractor(model, X_ex, y_ex, key=key, steps=int(s.get("extractor_steps", 1000)),
                              batch_size=int(s.get("batch_size", 128)),
                              learning_rate=float(s.get("learning_rate", 1e-3)), dp=dp)
    jax.block_until_ready(ex.params)
    extra = dict(extractor_params=models.num_params(ex.params), extractor_seconds=time.perf_counter() - start,
                 extractor_loss=float(np.mean(ex.losses[-max(1, len(ex.losses) // 10):])))
    if ex.privacy is not None:
        extra.update(extractor_epsilon=ex.privacy.epsilon, extractor_delta=ex.privacy.delta)
    mean = head.feature_mean(model, ex.params, split.public_X)
    F = head.head_features(model, ex.params, split.private_X, mean=mean)
    F_test = head.head_features(model, ex.params, split.test_X, mean=mean)
    extra["extractor_test_accuracy"] = float(np.mean(
        np.argmax(np.asarray(model.apply(ex.params, np.asarray(split.test_X, np.float32))), axis=1) == split.test_y))
    return F, F_test, (model, ex, mean), extra


def run_seed(settings: dict, seed: int) -> list[dict]:
    """One seed of one cell (see the module docstring); returns one row."""
    s = dict(settings)
    extractor = s.get("extractor", "none")
    if extractor not in EXTRACTORS:
        raise ValueError(f"extractor must be one of {list(EXTRACTORS)}, got {extractor!r}")
    dp_z = s.get("dp_noise_multiplier")
    if dp_z is not None and extractor == "none":
        raise ValueError("dp_noise_multiplier needs an extractor ('mlp' or 'cnn'), got extractor='none'")
    classes = s.get("classes")
    dataset = _load(s.get("dataset", "fashion-mnist"), None if classes is None else tuple(classes), s.get("n_train"),
                    s.get("n_test"), int(s.get("data_seed", 0)))
    split_key, extractor_key, head_key = jax.random.split(jax.random.key(seed), 3)
    split = head.split_public(dataset, fraction=float(s.get("public_fraction", 0.5)), key=split_key,
                              max_public=s.get("max_public"))
    fit_kwargs = dict(loss="softmax", l2_reg=float(s.get("l2_reg", 1e-3)), sigma=float(s.get("sigma", 1.0)),
                      epsilon=float(s.get("epsilon", 1.0)), delta=float(s.get("delta", 1e-4)),
                      bound=s.get("bound", "data-dependent"), solver=s.get("solver", "auto"),
                      cg_preconditioner=s.get("cg_preconditioner", "auto"),
                      num_classes=dataset.num_classes, on_exhausted="raise", key=head_key)
    row: dict = dict(n_public=int(split.public_X.shape[0]), n_private=int(split.private_X.shape[0]),
                     n_test_rows=int(split.test_X.shape[0]))

    if extractor == "none":
        F, F_test = split.private_X, split.test_X
        row.update(extractor_params=0, extractor_seconds=0.0, extractor_loss=math.nan)
        pipe = None
    else:
        cache_key = (seed, repr(sorted((k, v) for k, v in s.items() if k in _EXTRACTOR_SETTINGS)))
        if cache_key not in _FEATURES:
            while len(_FEATURES) >= _CACHE_SIZE:  # oldest first: a sweep runs every seed of a cell in turn
                _FEATURES.pop(next(iter(_FEATURES)))
            _FEATURES[cache_key] = _train_features(s, dataset, split, extractor, dp_z, extractor_key)
        F, F_test, pipe, extra = _FEATURES[cache_key]
        row.update(extra)
    row["feature_dim"] = int(F.shape[1])

    start = time.perf_counter()
    model0 = api.fit(F, split.private_y, **fit_kwargs)
    row["head_fit_seconds"] = time.perf_counter() - start
    row.update(head_params=int(np.size(model0.params)), solver=model0.config.solver,
               training_residual=model0.training_residual,
               residual_budget=model0.calibration.residual_budget,
               test_accuracy=model0.score(F_test, split.test_y),
               train_accuracy=model0.score(F, split.private_y))

    order = np.random.default_rng([seed, 7]).permutation(F.shape[0])
    cap = int(s.get("num_removals", 100))
    current, seconds, bounds = model0, [], []
    exhausted = False
    for idx in order[:cap]:
        start = time.perf_counter()
        try:
            current, report = api.remove(current, int(idx))
        except api.BudgetExhaustedError:
            exhausted = True  # the next removal would need a retrain (with fresh noise)
            break
        seconds.append(time.perf_counter() - start)
        bounds.append(report.residual_bound)
    served = current.ledger.removals
    row.update(removals_before_retrain=served, budget_exhausted=exhausted,
               # The first call compiles: the median of the later ones (NaN when there are none).
               removal_seconds=float(np.median(seconds[1:])) if len(seconds) > 1 else math.nan,
               first_removal_seconds=seconds[0] if seconds else math.nan,
               mean_step_bound=float(np.mean(bounds)) if bounds else math.nan)
    spare = current.calibration.residual_budget - current.ledger.residual_spent
    # Observed when the budget ran out; else extrapolated from the mean step bound (the cap was reached).
    row["removals_supported_estimate"] = (
        served + int(spare // row["mean_step_bound"])
        if not exhausted and bounds and row["mean_step_bound"] > 0 else served)
    cert = current.certificate()
    row.update(epsilon_spent=cert.epsilon, residual_spent=cert.residual_spent,
               test_accuracy_unlearned=current.score(F_test, split.test_y))

    # The head retrained from scratch on the retained rows with the same noise draw (same key): the
    # reference the certificate compares against. Timed warm (a second call), like the removals.
    keep = current.retained
    F_keep, y_keep = F[keep], np.asarray(split.private_y)[keep]
    start = time.perf_counter()
    reference = api.fit(F_keep, y_keep, **fit_kwargs)
    row["head_retrain_cold_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(api.fit(F_keep, y_keep, **fit_kwargs).params)
    row["head_retrain_seconds"] = time.perf_counter() - start
    w_u, w_r, w_0 = (np.asarray(m.params, np.float64) for m in (current, reference, model0))
    row.update(distance_to_retrained=float(np.linalg.norm(w_u - w_r)),
               distance_original_to_retrained=float(np.linalg.norm(w_0 - w_r)),
               test_accuracy_retrained=reference.score(F_test, split.test_y))
    row["relative_distance"] = (row["distance_to_retrained"] / row["distance_original_to_retrained"]
                                if row["distance_original_to_retrained"] > 0 else math.nan)
    if pipe is not None:
        model, ex, mean = pipe
        piped = head.CertifiedPipeline(model, ex, mean, current, disjoint_verified=True).certificate()
        row.update(pipeline_epsilon=piped.epsilon, pipeline_delta=piped.delta)
    else:
        row.update(pipeline_epsilon=cert.epsilon, pipeline_delta=cert.delta)
    return [row]


def _label(part) -> str:
    kind = str(part["extractor"].iloc[0])
    name = {"none": "raw pixels", "mlp": "MLP features", "cnn": "CNN features"}[kind]
    if "dp_noise_multiplier" in part and np.isfinite(part["dp_noise_multiplier"].astype(float)).any():
        name += f" (DP-SGD, z={float(part['dp_noise_multiplier'].iloc[0]):g})"
    return name


def plot(table):
    """Accuracy, removals before retraining, and removal vs retraining time per extractor (seed spread)."""
    import matplotlib

    table = table.copy()
    table["speedup"] = table["head_retrain_seconds"] / table["removal_seconds"]
    if "dp_noise_multiplier" not in table:
        table["dp_noise_multiplier"] = np.nan
    table["dp_noise_multiplier"] = table["dp_noise_multiplier"].astype(float)
    table["method"] = [
        _label(table.iloc[[i]]) for i in range(len(table))]
    fig, axes = figures._new_figure(3, width=4.0, height=3.3)
    methods = sorted(table["method"].unique(), key=lambda m: (not m.startswith("raw"), m))
    colors = {m: matplotlib.colormaps["tab10"](i) for i, m in enumerate(methods)}
    sigmas = sorted(table["sigma"].unique())
    markers = dict(zip(sigmas, "osD^v"))
    n_seeds = []
    for method in methods:
        part = table[table["method"] == method]
        for sigma in sigmas:
            sub = part[part["sigma"] == sigma]
            if sub.empty:
                continue
            label = f"{method}, $\\sigma$={sigma:g}" if len(sigmas) > 1 else method
            style = dict(label=label, color=colors[method], marker=markers[sigma],
                         linestyle="-" if sigma == sigmas[0] else "--")
            for ax, value in ((axes[0], "test_accuracy_unlearned"), (axes[1], "removals_supported_estimate")):
                st = figures.seed_stats(sub, ["l2_reg"], value)
                n_seeds.extend(st["n_seeds"].tolist())
                st = st.sort_values("l2_reg")
                ax.errorbar(st["l2_reg"], st["center"], yerr=[st["center"] - st["low"], st["high"] - st["center"]],
                            capsize=2, markersize=4, **style)
            st = figures.seed_stats(sub, ["l2_reg"], "speedup").sort_values("l2_reg")
            axes[2].errorbar(st["l2_reg"], st["center"], yerr=[st["center"] - st["low"], st["high"] - st["center"]],
                             capsize=2, markersize=4, **style)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel(r"$\lambda$ (l2_reg)")
    axes[0].set_ylabel("test accuracy after removals")
    axes[1].set_ylabel("removals before retraining\n(extrapolated past the cap)", fontsize=8)
    axes[1].set_yscale("log")
    axes[2].set_ylabel("head retrain time / removal time")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7, loc="lower left")
    eps = ", ".join(f"{e:g}" for e in sorted(table["epsilon"].unique()))
    dataset = str(table["dataset"].iloc[0]) if "dataset" in table else ""
    fig.suptitle(f"Certified softmax head on {dataset}: feature extractors vs raw pixels "
                 f"($\\epsilon$={eps}; {figures.spread_label('median_iqr', n_seeds)})", fontsize=9)
    return fig, axes
