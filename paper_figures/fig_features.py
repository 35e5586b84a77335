"""Certified unlearning of features and labels: the Newton modification against retraining.

Six panels against the rows affected by one request (a sensitive column zeroed, or noisy labels
corrected): distance to the same-noise retrain, the proven residual bound vs the exact residual, the
weight on the sensitive column, how much predictions move when it varies, test accuracy, and seconds of
the modification vs retraining. Reads the stored results of the ``features`` family (never trains
anything) and writes OUT_DIR/features.png and OUT_DIR/features.pdf.

Usage: python paper_figures/fig_features.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "features"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
