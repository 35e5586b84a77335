"""Removals supported before the first retrain, against epsilon, for several l2_reg (Guo Fig. 2 right).

Binary pullover vs coat on Fashion-MNIST (a seeded 6,000-row subsample of the 12,000 training rows,
sized for a 2-core machine), logistic loss, sigma = 1, delta = 1e-4, single removals in random order,
the data-dependent bound. Each cell records the spent residual beta after every removal under one
noise draw. With sigma fixed, the trajectory up to the first retrain does not depend on epsilon or on
the calibration (the same key draws the same b and the Newton steps do not look at the budget), so the
number of removals supported at a target (epsilon, calibration) is read off the stored trajectory: the
removals made while beta <= budget_for_sigma(sigma, epsilon, delta, calibration)
(:func:`certunlearn.figures.removals_supported`). The cells run at epsilon = 20 with the analytic
calibration, a budget (3.71 sigma) above what either calibration gives on the figure's epsilon grid
0.1..10 (guo at 10: 2.28 sigma), so the guo and analytic curves come from the same runs; a run stops at
its first retrain (``stop_at_retrain``), since nothing after it is used. The solver is pinned to "cg"
(exact Newton steps, solve error charged): the "cached" solver that ``solver="auto"`` would pick here
spends slack in the budget on staler steps, so its trajectory would depend on epsilon. A count that reaches the end
of a trajectory is a lower bound and is drawn as such. tests/test_figures.py checks the read-off
against direct runs at the target epsilon and calibration.

Run:    certunlearn sweep experiments/configs/budget.py --out results/budget
Smoke:  certunlearn sweep experiments/configs/budget.py:smoke --out results-smoke/budget
Figure: python paper_figures/fig_budget.py results/budget figures/
"""

from certunlearn.runner import default_config

#: (l2_reg, num_removals): removals per run, sized to the 2-core budget (about 10 minutes in all);
#: counts beyond them are drawn as lower bounds.
FULL_GRID = ((1e-4, 300), (3e-4, 600), (1e-3, 1500))
SMOKE_GRID = ((1e-2, 40), (3e-2, 40))


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits 3 vs 8)."""
    common = dict(family="budget", epsilon=20.0, calibration="analytic", removal_order="random",
                  checkpoint_every=0, stop_at_retrain=True, solver="cg")
    if variant == "smoke":
        return default_config(dataset="digits", classes=(3, 8), sigma=0.1, seeds=(0, 1), **common)
    if variant != "full":
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return default_config(dataset="fashion-mnist", classes=(2, 4), n_train=6000, sigma=1.0,
                          seeds=(0, 1, 2), **common)


def sweep(variant: str = "full"):
    """The grid: one trajectory cell per l2_reg (each with its own removal count)."""
    grid = SMOKE_GRID if variant == "smoke" else FULL_GRID
    return [{"l2_reg": l2_reg, "num_removals": num} for l2_reg, num in grid]
