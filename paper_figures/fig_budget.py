"""Figure 2: removals supported before the first retrain against epsilon, per l2_reg, analytic vs guo calibration.

Reads the stored results of the ``budget`` family (never trains anything) and writes
OUT_DIR/budget.png and OUT_DIR/budget.pdf.

Usage: python paper_figures/fig_budget.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "budget"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
