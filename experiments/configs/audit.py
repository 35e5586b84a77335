"""Empirical epsilon audits: the certified epsilon against the audited lower bound epsilon_LB (THEORY.md Sec. 6).

Digits 3 vs 8 (all 285 training rows), logistic loss, l2_reg = 1e-2, delta = 1e-5, the data-dependent
bound and Guo's update, a residual budget of 0.05 (sigma follows from epsilon, delta and the budget).
Each cell runs, for each of its ``seeds``, the two audits of :func:`certunlearn.audit.run_audit`:

* the **calibrator** audit: the Gaussian mechanism with the residual exactly at its budget
  (``calibrator_residual_budget``), with sigma as calibrated (scale 1) and halved (scale 0.5, a
  deliberately mis-calibrated mechanism), ``calibrator_num_samples`` = 1,000 evaluation samples per side;
* the **end-to-end** audit: over N = ``num_seeds`` = 1,000 noise seeds, certified fit + Newton removal of
  the most influential row against a retrain with fresh noise (the first half of the seeds selects the
  test, the second half evaluates it).

The grid crosses epsilon (0.25 .. 4) with the calibration (guo, analytic). A power check adds, at each
epsilon, an end-to-end cell that publishes the model trained on D unchanged (``removal="none"``), the
broken "unlearning" the audit must flag. Every epsilon_LB is a one-sided Clopper-Pearson bound at
confidence 1 - alpha = 95%; a sound mechanism gives epsilon_LB <= certified epsilon (except with
probability alpha). The seeds repeat the whole audit with independent randomness, for the spread.

``seed`` of :data:`certunlearn.audit.AUDIT_CONFIG_DEFAULTS` is replaced by ``seeds`` here (the runner's
convention): seed ``s`` runs the cell's audits with ``seed=s``. Every other key is an audit config key.

Run:    certunlearn audit experiments/configs/audit.py --out results/audit
Smoke:  certunlearn audit experiments/configs/audit.py --smoke --out results-smoke/audit
Python: certunlearn.audit_sweep.sweep("experiments/configs/audit.py", out="results/audit")
Figure: python paper_figures/fig_audit.py results/audit figures/
"""

import ml_collections

from certunlearn.audit import audit_config_defaults

EPSILONS = (0.25, 0.5, 1.0, 2.0, 4.0)
CALIBRATIONS = ("guo", "analytic")
#: The broken mechanism of the power check (end to end only: its calibrator audit would repeat the
#: certified cell's).
POWER_CHECK = {"calibration": "analytic", "removal": "none", "kinds": ("end_to_end",)}


def get_config(variant: str = "full"):
    """The family's base config; ``variant="smoke"`` (100 end-to-end seeds, 2 repetitions) runs in seconds.

    ``"default"`` is accepted as another name of ``"full"`` (the runner asks for ``"full"``).
    """
    if variant not in ("full", "default", "smoke"):
        raise ValueError(f'variant must be "full" (or "default") or "smoke", got {variant!r}')
    values = audit_config_defaults()
    del values["seed"]  # replaced by seeds
    values.update(family="audit", dataset="digits", classes=(3, 8), l2_reg=1e-2, residual_budget=0.05,
                  delta=1e-5, alpha=0.05, calibrator_num_samples=1000, calibrator_sigma_scales=(1.0, 0.5))
    if variant == "smoke":
        values.update(num_seeds=100, seeds=(0, 1))
    else:
        values.update(num_seeds=1000, seeds=(0, 1, 2, 3, 4))
    return ml_collections.ConfigDict(values)


def sweep(variant: str = "full"):
    """The grid: epsilon x calibration (both audits), plus the end-to-end power check at each epsilon."""
    if variant == "smoke":
        return [{"epsilon": 1.0, "calibration": "analytic"}, {"epsilon": 1.0, **POWER_CHECK}]
    grid = [{"epsilon": e, "calibration": c} for e in EPSILONS for c in CALIBRATIONS]
    return grid + [{"epsilon": e, **POWER_CHECK} for e in EPSILONS]
