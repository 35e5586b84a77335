"""Time per removal vs the time to retrain from scratch, as the training set grows (Guo Sec. 4).

Binary pullover vs coat on Fashion-MNIST, logistic loss, l2_reg = 1e-3, sigma = 1, for growing
subsamples n_train, with the three Newton solvers of the library ("cached": a kept Hessian inverse,
downdated per removal, its staleness charged to the certificate, rebuilt when that pays; "cholesky": the
Hessian rebuilt and factorised per removal, O(n d^2); "cg": preconditioned conjugate gradients). Each seed removes ``num_removals`` rows one
at a time and retrains from scratch at the last step. The retrain reuses the initial fit's compiled code
(the runner keeps its shape fixed, see :mod:`certunlearn.runner`), so compilation is not counted;
``timing_repeats`` > 1 would keep the fastest of several fits. The figure takes the mean removal
time over steps 2.. (amortised over the "cached" solver's occasional rebuilds; step 1 may
compile), shows the median step as well, and compares them with that retrain time. Timings depend on
the machine and its load; the manifest records the host.

Run:    certunlearn sweep experiments/configs/timing.py --out results/timing
Smoke:  certunlearn sweep experiments/configs/timing.py:smoke --out results-smoke/timing
Figure: python paper_figures/fig_timing.py results/timing figures/
"""

from certunlearn.runner import default_config

N_TRAIN = (1500, 3000, 6000, 12000)
SOLVERS = ("cached", "cholesky", "cg")


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` is the CPU-sized version (digits, two sizes)."""
    common = dict(family="timing", sigma=1.0, num_removals=8, checkpoint_every=0, timing_repeats=1,
                  vmap_seeds=False)  # single-fit times, not batch averages
    if variant == "smoke":
        return default_config(dataset="digits", classes=(3, 8), l2_reg=1e-2, seeds=(0, 1),
                              **{**common, "num_removals": 4})
    if variant != "full":
        raise ValueError(f'variant must be "full" or "smoke", got {variant!r}')
    return default_config(dataset="fashion-mnist", classes=(2, 4), l2_reg=1e-3, seeds=(0, 1, 2), **common)


def sweep(variant: str = "full"):
    """The grid: every subsample size with every solver."""
    if variant == "smoke":
        return [{"n_train": n, "solver": s} for n in (150, 285) for s in ("cached", "cholesky")]
    return [{"n_train": n, "solver": s} for n in N_TRAIN for s in SOLVERS]
