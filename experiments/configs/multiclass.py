"""Binary (pullover vs coat) and 10-class softmax on Fashion-MNIST: accuracy and budget over removals.

Both tasks use 12,000 training rows (all pullovers and coats; a seeded subsample of all ten classes)
and 2,000 test rows, l2_reg = 1e-3, sigma = 1, epsilon = 1, the data-dependent bound (for softmax with
the curvature constant gamma = 1/sqrt(2) of :mod:`certunlearn.losses`), random single removals, and a
retrain from scratch (same noise) every ``checkpoint_every`` steps to compare accuracies and
parameters. Both tasks use the CG solver: softmax has d x K = 7,840 parameters, so "auto" picks it;
the binary task pins it, so that both make exact Newton steps.

Run:    certunlearn sweep experiments/configs/multiclass.py --out results/multiclass
Smoke:  certunlearn sweep experiments/configs/multiclass.py:smoke --out results-smoke/multiclass
Figure: python paper_figures/fig_multiclass.py results/multiclass figures/
"""

from certunlearn.runner import default_config


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits)."""
    common = dict(family="multiclass", sigma=1.0, epsilon=1.0, removal_order="random")
    if variant == "smoke":
        return default_config(dataset="digits", l2_reg=1e-2, num_removals=6, checkpoint_every=3,
                              seeds=(0, 1), **common)
    if variant != "full":
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return default_config(dataset="fashion-mnist", l2_reg=1e-3, n_train=12000, n_test=2000,
                          num_removals=40, checkpoint_every=20, seeds=(0, 1, 2), **common)


def sweep(variant: str = "full"):
    """The grid: the binary task (logistic) and the multiclass task (softmax)."""
    if variant == "smoke":
        return [
            {"classes": (3, 8), "loss": "logistic", "n_train": None, "n_test": None},
            {"classes": (0, 1, 2, 3), "loss": "softmax", "n_train": 300, "n_test": None},
        ]
    return [
        {"classes": (2, 4), "loss": "logistic", "n_train": None, "solver": "cg"},
        {"classes": None, "loss": "softmax"},  # "auto" is "cg" here (7,840 parameters)
    ]
