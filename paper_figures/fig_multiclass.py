"""Figure 5: binary (pullover vs coat) vs 10-class softmax: test accuracy and budget spent against removals.

Reads the stored results of the ``multiclass`` family (never trains anything) and writes
OUT_DIR/multiclass.png and OUT_DIR/multiclass.pdf.

Usage: python paper_figures/fig_multiclass.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "multiclass"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
