"""Figure 1: test accuracy against l2_reg, one curve per sigma (median and IQR over seeds).

Reads the stored results of the ``accuracy`` family (never trains anything) and writes
OUT_DIR/accuracy.png and OUT_DIR/accuracy.pdf.

Usage: python paper_figures/fig_accuracy.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "accuracy"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
