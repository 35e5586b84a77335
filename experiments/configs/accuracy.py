"""Test accuracy against l2_reg and sigma (Guo et al. 2020, Fig. 2 left, on Fashion-MNIST).

Binary pullover (class 2, label +1) vs coat (class 4, label -1), logistic loss, every training row
(12,000), the data-dependent bound. No removals: each cell trains the certified (loss-perturbed) model
for every seed and records its test accuracy; the seeds draw the noise b ~ N(0, sigma^2 I).

Run:    certunlearn sweep experiments/configs/accuracy.py --out results/accuracy
Smoke:  certunlearn sweep experiments/configs/accuracy.py:smoke --out results-smoke/accuracy
Figure: python paper_figures/fig_accuracy.py results/accuracy figures/
"""

from certunlearn.runner import default_config

L2_REGS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SIGMAS = (0.1, 1.0, 10.0)


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits 3 vs 8)."""
    if variant == "smoke":
        return default_config(family="accuracy", dataset="digits", classes=(3, 8), seeds=(0, 1))
    if variant != "full":
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return default_config(family="accuracy", dataset="fashion-mnist", classes=(2, 4), seeds=(0, 1, 2))


def sweep(variant: str = "full"):
    """The grid: every l2_reg with every sigma."""
    l2_regs, sigmas = ((1e-3, 1e-1), (0.1, 10.0)) if variant == "smoke" else (L2_REGS, SIGMAS)
    return [{"l2_reg": l2_reg, "sigma": sigma} for l2_reg in l2_regs for sigma in sigmas]
