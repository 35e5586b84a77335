"""Certified unlearning of features and labels (Warnecke et al., NDSS 2023): one request against retraining.

Fashion-MNIST pullover vs coat (a seeded 2,000-row training subsample, sized for a 2-core machine) with one
added *sensitive* column that leaks the label (strength a = 0.5, agreeing with the label on 90% of the
rows), logistic loss, sigma = 1, epsilon = 1, delta = 1e-5 (analytic calibration, a residual budget of
0.27), the data-dependent bound and Guo's update. One modification request per cell, served by
:func:`certunlearn.modify.modify`:

* ``kind="feature"``: the sensitive column set to 0 in 1 .. 300 random rows or in every row;
* ``kind="label"``: 10% of the training labels were flipped; 1 .. 100 of them, or all 200, corrected.

Against retraining from scratch on the modified data (same noise, and a fresh draw for scale), at
l2_reg = 1e-3 and 1e-2. Measured (``certunlearn.families.features``): certified epsilon, the step's
proven residual bound vs its exact residual, the distance to the retrained model, test accuracy, the
weight on the sensitive column and how much predictions move when it varies, and the seconds of the
modification vs retraining. Requests whose step would overflow the budget are served by a retrain with
fresh noise (recorded in ``retrained``).

Run:    certunlearn sweep experiments/configs/features.py --out results/features
Smoke:  certunlearn sweep experiments/configs/features.py --smoke --out results-smoke/features
Figure: python paper_figures/fig_features.py results/features figures/
"""

import ml_collections

FAMILY = "features"
TASK = "certunlearn.families.features:run_seed"
FEATURE_ROWS = (1, 3, 10, 30, 100, 300, None)  # None: every row
LABEL_ROWS = (1, 3, 10, 30, 100, None)  # None: every flipped label
L2_REGS = (1e-3, 1e-2)


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits 3 vs 8, < 30 s)."""
    common = dict(family=FAMILY, task=TASK, num_columns=1, strength=0.5, agreement=0.9, label_noise=0.1,
                  kind="feature", num_rows=None, sigma=1.0, epsilon=1.0, delta=1e-5, calibration="analytic",
                  bound="data-dependent", update="guo", solver="auto", data_seed=0, n_test=None)
    if variant == "smoke":
        values = dict(common, dataset="digits", classes=(3, 8), n_train=None, l2_reg=1e-1, seeds=(0, 1))
    elif variant in ("full", "default"):
        values = dict(common, dataset="fashion-mnist", classes=(2, 4), n_train=2000, n_test=2000, l2_reg=1e-3,
                      seeds=(0, 1, 2))
    else:
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return ml_collections.ConfigDict(values)


def sweep(variant: str = "full"):
    """The grid: kind x rows affected x l2_reg (smoke: 10 rows and all rows, one l2_reg)."""
    if variant == "smoke":
        return [{"kind": kind, "num_rows": rows} for kind in ("feature", "label") for rows in (10, None)]
    grid = []
    for l2_reg in L2_REGS:
        grid += [{"kind": "feature", "num_rows": rows, "l2_reg": l2_reg} for rows in FEATURE_ROWS]
        grid += [{"kind": "label", "num_rows": rows, "l2_reg": l2_reg} for rows in LABEL_ROWS]
    return grid
