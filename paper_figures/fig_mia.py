"""Membership inference after unlearning: attack AUC per method and TPR at low FPR.

Reads the stored results of the ``mia`` family (never trains anything) and writes OUT_DIR/mia.png and
OUT_DIR/mia.pdf: for each task and number of forgotten rows, the AUC of the loss-threshold attack and of
LiRA (forgotten rows vs never-seen rows) against l2_reg, one colour per method, with the original model
("none") as the positive control and the retrained model as the chance reference; and the TPR at
FPR 1e-3 / 1e-2 / 1e-1 (log-log, chance on the diagonal) in the most memorising cell; median and
interquartile range over seeds.

Usage: python paper_figures/fig_mia.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "mia"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
