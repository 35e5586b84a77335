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
FAMILY = "multiclass"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    table = figures.load_results(results_dir, FAMILY)
    fig, _ = figures.plot_multiclass(table)
    return figures.save(fig, out_dir, NAME)


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    for path in main(*sys.argv[1:]):
        print(path)
