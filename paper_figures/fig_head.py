"""Certified softmax head on a frozen feature extractor (MLP, CNN) vs raw pixels on Fashion-MNIST.

Three panels against l2_reg, one line per extractor (and sigma): test accuracy after the removals,
removals the residual budget supports before a retrain, and head retrain time over removal time; median
and interquartile range over seeds. Reads the stored results of the ``head`` family (never trains
anything) and writes OUT_DIR/head.png and OUT_DIR/head.pdf.

Usage: python paper_figures/fig_head.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "head"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
