"""A certified softmax head on a frozen feature extractor vs the certified softmax on raw pixels.

Guo et al. (2020, arXiv:1911.03030), settings 2 and 3, on Fashion-MNIST (all ten classes): the training
rows are split into a public half (trains the extractor: an MLP or a CNN, optax Adam; preprocessing and
feature centring use public statistics only) and a private half (the certified head's rows: L2-normalised
penultimate features, :func:`certunlearn.api.fit` with the softmax loss). ``extractor="none"`` is the
baseline: the certified softmax on the (public-statistics) normalised raw pixels. Cells cross the
extractor with ``l2_reg`` and ``sigma`` (epsilon = 1, delta = 1e-4, data-dependent bound); one more cell
trains the MLP extractor with DP-SGD on the private rows (Guo et al.'s setting 3). Per seed: test accuracy
(at fit, after the removals, of the retrained head), random single removals until the first retrain (cap
``num_removals``), the removals the budget supports (observed + extrapolated from the mean step bound),
median wall time of a removal vs retraining the head, and the distance from the unlearned head to the head
retrained on the retained rows with the same noise.

Run:    certunlearn sweep experiments/configs/head.py --out results/head
Smoke:  certunlearn sweep experiments/configs/head.py --smoke --out results-smoke/head   (digits, CPU)
Figure: python paper_figures/fig_head.py results/head figures/
"""

import ml_collections

EXTRACTORS = ("none", "mlp", "cnn")


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is CPU-sized (digits, 600 rows, tiny extractors)."""
    common = dict(family="head", task="certunlearn.families.head:run_seed", dataset="fashion-mnist",
                  classes=None, data_seed=0, public_fraction=0.5, max_public=None, extractor="none",
                  dp_noise_multiplier=None, dp_clip_norm=1.0, dp_delta=1e-5, l2_reg=1e-3, sigma=1.0,
                  epsilon=1.0, delta=1e-4, bound="data-dependent", solver="auto")
    if variant == "smoke":
        # Digits (8x8 images, bundled). 64 features for every extractor: the three heads (640 parameters)
        # share one compilation.
        values = dict(common, dataset="digits", n_train=600, n_test=300, hidden=(64,), channels=(4,),
                      cnn_hidden=64, extractor_steps=60, batch_size=64, learning_rate=3e-3, l2_reg=1e-2,
                      num_removals=4, solver="cg", cg_preconditioner="auto", seeds=(0, 1))
    elif variant in ("full", "default"):
        values = dict(common, n_train=30000, n_test=5000, hidden=(256,), channels=(16, 32), cnn_hidden=128,
                      extractor_steps=2000, batch_size=128, learning_rate=1e-3, num_removals=100,
                      cg_preconditioner="auto", seeds=(0, 1, 2))
    else:
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return ml_collections.ConfigDict(values)


def sweep(variant: str = "full"):
    """The grid: extractor x l2_reg x sigma (smoke: the three extractors), plus a DP-SGD extractor cell."""
    if variant == "smoke":
        return [{"extractor": e} for e in EXTRACTORS]
    grid = [{"extractor": e, "l2_reg": l2, "sigma": sigma}
            for e in EXTRACTORS for l2 in (1e-4, 1e-3, 1e-2) for sigma in (0.1, 1.0)]
    grid.append({"extractor": "mlp", "l2_reg": 1e-3, "sigma": 1.0, "dp_noise_multiplier": 1.0})
    return grid
