"""Figure: certified epsilon against the audited lower bound epsilon_LB, with the line epsilon_LB = epsilon.

Reads the stored results of the ``audit`` family (written by :func:`certunlearn.audit_sweep.sweep`; never
trains anything) and writes OUT_DIR/audit.png and OUT_DIR/audit.pdf. One panel per audit kind
(calibrator, end to end); one colour per audited mechanism (as certified, sigma halved, no removal) and
one marker per calibration (analytic: circle, guo: triangle). Points are the median over the audit's
seeds, bars the interquartile range (:func:`certunlearn.figures.seed_stats`); points at the same epsilon
are spread sideways a little so that they do not hide each other. Above the diagonal (shaded) an audit
refutes its certificate at confidence 1 - alpha; the dotted line is the largest epsilon_LB that N
evaluation samples per side can show (no errors on either side), so a point there means "as far as N
can see".

Usage: python paper_figures/fig_audit.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys

from certunlearn import figures

NAME = "audit"


def main(results_dir, out_dir="figures"):
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
