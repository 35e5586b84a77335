"""Certified unlearning for deep networks (Zhang et al., ICML 2024): a damped Newton step vs retraining.

A softplus MLP with one hidden layer of 16 units (12,730 parameters, float64) on a seeded 1,000-row
subsample of all ten Fashion-MNIST classes (1,000 test rows), softmax cross-entropy with l2_reg per row
(sum convention), trained by 300 full-batch Adam steps and up to 3,000 L-BFGS steps (to a gradient
norm of 1e-6). Removing 1, 10 and 100 random rows (nested) by: nothing, the damped Newton step (damping
1e-3 per row; CG, and stochastic LiSSA), the step published with Gaussian noise calibrated at
epsilon = 1, delta = 1e-5 on the local and on the worst-case (Zhang et al. Thm. 3.4) bound, 50 Adam
fine-tuning steps, and retraining from the same initialisation. The reference is the warm retrain
(L-BFGS from w on the retained rows to a gradient norm of 1e-7): the local minimiser the certificate
talks about. Measured (``certunlearn.families.deep``): accuracy on test / forgotten / retained rows,
distance to the warm retrain (and to the retrain from scratch), the certified Delta of both bounds, and
seconds per request vs retraining. The grid compares l2_reg = 3e-3 and 1e-2 (more regularisation: more
local curvature, a lower accuracy). About 7 minutes on 2 CPU cores.

Run:    certunlearn sweep experiments/configs/deep.py --out results/deep
Smoke:  certunlearn sweep experiments/configs/deep.py --smoke --out results-smoke/deep
Figure: python paper_figures/fig_deep.py results/deep figures/
"""

import ml_collections

FAMILY = "deep"
TASK = "certunlearn.families.deep:run_seed"


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits, < 30 s)."""
    common = dict(family=FAMILY, task=TASK, classes=None, activation="softplus", data_seed=0,  # noqa: C408
                  learning_rate=2e-2, polish_tol=1e-6, retrain_tol=1e-7, damping=1e-3, epsilon=1.0,
                  delta=1e-5, calibration="analytic", finetune_learning_rate=1e-2)
    if variant == "smoke":
        values = dict(common, dataset="digits", n_train=150, n_test=100, hidden=(8,), l2_reg=1e-2,
                      train_steps=100, polish_steps=1000, retrain_steps=1000, finetune_steps=10,
                      lanczos_steps=10, curvature="lanczos", lissa_depth=20, lissa_batch_size=32,
                      num_removed=(1, 5), seeds=(0,))
    elif variant in ("full", "default"):
        values = dict(common, dataset="fashion-mnist", n_train=1000, n_test=1000, hidden=(16,), l2_reg=1e-2,
                      train_steps=300, polish_steps=3000, retrain_steps=3000, finetune_steps=50,
                      lanczos_steps=60, curvature="auto", lissa_depth=300, lissa_batch_size=128,
                      num_removed=(1, 10, 100), seeds=(0, 1, 2))
    else:
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return ml_collections.ConfigDict(values)


def sweep(variant: str = "full"):
    """The grid: one cell for smoke; l2_reg in {3e-3, 1e-2} for the full run."""
    if variant == "smoke":
        return [{}]
    if variant not in ("full", "default"):
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return [{"l2_reg": 3e-3}, {"l2_reg": 1e-2}]
