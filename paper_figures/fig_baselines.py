"""Unlearning baselines: distance to the retrained model, forget-set accuracy and time per method.

Reads the stored results of the ``baselines`` family (never trains anything) and writes
OUT_DIR/baselines.png and OUT_DIR/baselines.pdf: for each task and removal order (random rows or one
class), against the number of rows forgotten in one request, one colour per method (certified Newton,
retrain, fine-tune, gradient ascent, none): the parameter distance to the same-noise retrained model, the
share of test predictions that differ from it, the accuracy on the forgotten rows, and the seconds per
request; median and interquartile range over seeds.

Usage: python paper_figures/fig_baselines.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "baselines"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
