"""Deep certified unlearning (Zhang et al. 2024): distance to retraining, accuracy and time vs rows removed.

Reads the stored results of the ``deep`` family (never trains anything) and writes OUT_DIR/deep.png and
OUT_DIR/deep.pdf: (a) the distance of each method's parameters to the warm retrain (the local minimiser the
certificate refers to) with the certified Delta of the local and worst-case bounds, (b) test accuracy,
(c) seconds per request against retraining, each against the number of rows removed, median and IQR
over seeds.

Usage: python paper_figures/fig_deep.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "deep"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
