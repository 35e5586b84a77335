"""Certified Newton removal against retraining, fine-tuning, gradient ascent and doing nothing.

What it measures (family ``baselines``, :mod:`certunlearn.families.baselines`): per seed, a certified model
(sigma = 1, epsilon = 1, delta = 1e-4, analytic calibration, exact residual bound: the residual computed
in float64, the tightest proven budget check) is trained, then the first m rows of a seeded removal
order are forgotten in one request by every method, for m on a grid. Columns: distance to the same-noise
retrained model (parameters, test predictions, logits), accuracy on the forgotten / retained / test rows,
loss on the forgotten rows, the exact gradient residual, Newton's certified epsilon (NaN for the
uncertified methods), wall time and HVP count. Cells: three tasks x two removal orders (random rows;
all rows from one class, a class-targeted request):

* digits 3 vs 8 (285 training rows, 64 features), logistic, l2_reg = 1e-3, m in 1..100 (class 3);
* Fashion-MNIST pullover (2) vs coat (4), a 4,000-row subsample (784 features), logistic, l2_reg = 1e-3,
  m in 1..500 (class 2);
* Fashion-MNIST, all 10 classes, 2,000 rows, softmax (7,840 parameters, CG without preconditioner),
  l2_reg = 1e-2, m in 1..150 (class 0); gradient ascent with a 10x smaller step, as one step of 1.0
  already destroys this model.

Fine-tuning: 25 full-batch SGD steps of size 10 on the retained rows' mean objective; gradient ascent:
10 steps ascending the forgotten rows' mean loss. Timings exclude compilation (``warmup``).

Run:    certunlearn sweep experiments/configs/baselines.py --out results/baselines
Smoke:  certunlearn sweep experiments/configs/baselines.py:smoke --out results-smoke/baselines
Figure: python paper_figures/fig_baselines.py results/baselines figures/
"""

import ml_collections

from certunlearn.families import baselines

FAMILY = baselines.FAMILY
TASK = "certunlearn.families.baselines:run_seed"

_TASKS = {
    "digits": dict(dataset="digits", classes=(3, 8), loss="logistic", n_train=None, n_test=None, l2_reg=1e-3,
                   forget_sizes=(1, 5, 20, 50, 100), target_class=3, cg_preconditioner="auto",
                   ascent_learning_rate=1.0),
    "fashion-binary": dict(dataset="fashion-mnist", classes=(2, 4), loss="logistic", n_train=4000, n_test=1000,
                           l2_reg=1e-3, forget_sizes=(1, 10, 50, 200, 500), target_class=2,
                           cg_preconditioner="auto", ascent_learning_rate=1.0),
    "fashion-softmax": dict(dataset="fashion-mnist", classes=None, loss="softmax", n_train=2000, n_test=1000,
                            l2_reg=1e-2, forget_sizes=(1, 10, 50, 150), target_class=0, cg_preconditioner="none",
                            ascent_learning_rate=0.1),
}


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits 3 vs 8, < 30 s)."""
    if variant not in ("full", "smoke"):
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    settings = baselines.default_settings(
        sigma=1.0, epsilon=1.0, delta=1e-4, calibration="analytic", bound="exact", solver="auto", warmup=True,
        **_TASKS["digits"],
    )
    seeds = (0, 1, 2)
    if variant == "smoke":
        settings.update(forget_sizes=(1, 10))
        seeds = (0, 1)
    return ml_collections.ConfigDict(dict(family=FAMILY, task=TASK, seeds=seeds, **settings))


def sweep(variant: str = "full"):
    """The grid: tasks x removal orders (the forget sizes and methods are within a cell)."""
    orders = ("random", "class")
    if variant == "smoke":
        return [{"removal_order": order} for order in orders]
    return [{**task, "removal_order": order} for task in _TASKS.values() for order in orders]
