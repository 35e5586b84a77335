"""Worst-case vs data-dependent bound vs the exact residual, against the number of removals.

Guo et al. 2020 (Fig. 3 left) on Fashion-MNIST pullover vs coat (a seeded 6,000-row subsample, sized
for a 2-core machine), logistic loss, l2_reg = 1e-3, sigma = 1, single removals. One cell per bound type
and removal order (random and highest-influence first). The bounds family measures bounds, not
certificates: epsilon is set so large (1e6 with the guo calibration, a residual budget of 2.3e5 sigma;
the library rightly warns that guo's formula under-noises there, and the runner records the warning in
the manifest) that no removal triggers a retrain, so every cell follows the same Newton trajectory for
a given seed and the three residuals are comparable step by step. The solver is pinned to "cg" (exact
Newton steps, its solve error charged to the bound): the "cached" solver that ``solver="auto"`` picks at
this size takes staler steps the more budget is left, so with this budget its steps, and the exact
residual, would depend on the bound type. For the same reason CG solves to its relative tolerance
(``cg_error_ratio=0``) rather than to a fraction of the last step's remainder, which differs by bound.
The figure draws, on a log scale,
the accumulated worst-case and data-dependent bounds (``residual_spent`` of those cells) and the exact
gradient residual ``||grad L_b(w; D')||`` (``exact_residual``).

Run:    certunlearn sweep experiments/configs/bounds.py --out results/bounds
Smoke:  certunlearn sweep experiments/configs/bounds.py:smoke --out results-smoke/bounds
Figure: python paper_figures/fig_bounds.py results/bounds figures/
"""

from certunlearn.runner import default_config

BOUNDS = ("worst-case", "data-dependent", "exact")
ORDERS = ("random", "influence")


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits 3 vs 8)."""
    common = dict(family="bounds", epsilon=1e6, calibration="guo", sigma=1.0, checkpoint_every=0, solver="cg",
                  cg_error_ratio=0.0)
    if variant == "smoke":
        return default_config(dataset="digits", classes=(3, 8), l2_reg=1e-2, num_removals=10,
                              seeds=(0, 1), **common)
    if variant != "full":
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return default_config(dataset="fashion-mnist", classes=(2, 4), n_train=6000, l2_reg=1e-3,
                          num_removals=200, seeds=(0, 1, 2), **common)


def sweep(variant: str = "full"):
    """The grid: every bound type with every removal order."""
    orders = ("random", "influence") if variant == "smoke" else ORDERS
    return [{"bound": bound, "removal_order": order} for order in orders for bound in BOUNDS]
