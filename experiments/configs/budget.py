"""Removals supported before the first retrain, against epsilon, for several l2_reg (Guo Fig. 2 right).

Binary pullover vs coat on Fashion-MNIST (12,000 rows), logistic loss, sigma = 1, single removals in
random order, the data-dependent bound. Each cell records the spent residual beta after every removal
under one noise draw. With sigma fixed, the trajectory up to the first retrain does not depend on
epsilon or on the calibration (the same key draws the same b and the Newton steps do not look at the
budget), so the number of removals supported at a target (epsilon, calibration) is read off the stored
trajectory: the removals made while beta <= budget_for_sigma(sigma, epsilon, delta, calibration)
(:func:`certunlearn.figures.removals_supported`). The cells run at a large epsilon (guo calibration,
epsilon = 20: a larger budget than both calibrations give anywhere on the figure's epsilon grid
0.1..10), so the guo and analytic curves come from the same runs; a run stops at its first retrain
(``stop_at_retrain``), since nothing after it is used. A count that reaches the end of a
trajectory is a lower bound and is drawn as such. tests/test_figures.py checks this read-off against
direct runs at the target epsilon.

Run:    certunlearn sweep experiments/configs/budget.py --out results/budget
Smoke:  certunlearn sweep experiments/configs/budget.py:smoke --out results-smoke/budget
Figure: python paper_figures/fig_budget.py results/budget figures/
"""

from certunlearn.runner import default_config

#: (l2_reg, num_removals): removals per run, sized to the 2-core budget (about 15 minutes in all); counts
#: beyond them are drawn as lower bounds.
FULL_GRID = ((3e-5, 300), (1e-4, 400), (3e-4, 400), (1e-3, 500))
SMOKE_GRID = ((1e-2, 40), (3e-2, 40))


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits 3 vs 8)."""
    common = dict(family="budget", sigma=1.0, epsilon=20.0, calibration="guo", removal_order="random",
                  checkpoint_every=0, stop_at_retrain=True)
    if variant == "smoke":
        return default_config(dataset="digits", classes=(3, 8), sigma=0.1, seeds=(0, 1),
                              **{k: v for k, v in common.items() if k != "sigma"})
    if variant != "full":
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return default_config(dataset="fashion-mnist", classes=(2, 4), seeds=(0, 1, 2), **common)


def sweep(variant: str = "full"):
    """The grid: one trajectory cell per l2_reg (each with its own removal count)."""
    grid = SMOKE_GRID if variant == "smoke" else FULL_GRID
    return [{"l2_reg": l2_reg, "num_removals": num} for l2_reg, num in grid]
