"""Membership inference on forgotten rows after each unlearning method (loss threshold and LiRA).

What it measures (family ``mia``, :mod:`certunlearn.families.mia`): per seed, a certified model is
trained, ``num_forget`` random rows are forgotten by every method (certified Newton removal in requests of
5 rows with the gradient update and the exact residual bound; the same-noise retrain; fine-tuning;
gradient ascent; and ``none``, the original model: the positive control) and each published model is
attacked with the forgotten rows as members and the never-seen test rows as non-members: AUC, advantage
and TPR at FPR 1e-3 / 1e-2 / 1e-1 of the loss-threshold attack and of online LiRA with 16 shadow models
(trained per seed, vmapped, on random halves of train + test with the target's l2_reg and sigma).

Full: Fashion-MNIST pullover (2) vs coat (4), 500 training and 500 test rows (784 features > 500 rows,
so a weakly regularised model memorises), sigma = 0.1 (small noise: memorisation stays visible),
epsilon = 1, delta = 1e-4; cells over l2_reg in {1e-4, 1e-3, 1e-2} and num_forget in {20, 100}; 6 seeds.
With 500 non-members an FPR of 1e-3 is only met at zero false positives; with m members the AUC of an
attack at chance still scatters by about 0.29 / sqrt(m) (0.065 at m = 20) from seed to seed. Where a Newton request would
overflow the budget, the library retrains with fresh noise (``retrains`` counts them), as certified
removal must.

Smoke: a memorising synthetic task (100 features, 60 training and 60 test rows) in seconds.

Run:    certunlearn sweep experiments/configs/mia.py --out results/mia
Smoke:  certunlearn sweep experiments/configs/mia.py:smoke --out results-smoke/mia
Figure: python paper_figures/fig_mia.py results/mia figures/
"""

import ml_collections

from certunlearn.families import mia

FAMILY = mia.FAMILY
TASK = "certunlearn.families.mia:run_seed"


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (synthetic, < 30 s)."""
    if variant not in ("full", "smoke"):
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    common = dict(sigma=0.1, epsilon=1.0, delta=1e-4, calibration="analytic", bound="exact", update="gradient",
                  solver="cholesky", fprs=(1e-3, 1e-2, 1e-1), lira_online=True, warmup=False)
    if variant == "smoke":
        settings = mia.default_settings(
            dataset="synthetic", classes=(0, 1), n_features=100, n_train=60, n_test=60, l2_reg=1e-3,
            num_forget=20, removal_batch=5, num_shadow=8, **common,
        )
        return ml_collections.ConfigDict(dict(family=FAMILY, task=TASK, seeds=(0, 1), **settings))
    settings = mia.default_settings(
        dataset="fashion-mnist", classes=(2, 4), n_train=500, n_test=500, l2_reg=1e-3, num_forget=50,
        removal_batch=5, num_shadow=16, **common,
    )
    return ml_collections.ConfigDict(dict(family=FAMILY, task=TASK, seeds=(0, 1, 2, 3, 4, 5), **settings))


def sweep(variant: str = "full"):
    """The grid: l2_reg x num_forget (methods and attacks are within a cell)."""
    if variant == "smoke":
        return [{"l2_reg": l2_reg} for l2_reg in (1e-3, 1e-2)]
    return [{"l2_reg": l2_reg, "num_forget": m} for l2_reg in (1e-4, 1e-3, 1e-2) for m in (20, 100)]
