"""Figure 4: time per removal vs time to retrain from scratch, against the number of training rows.

Reads the stored results of the ``timing`` family (never trains anything) and writes
OUT_DIR/timing.png and OUT_DIR/timing.pdf.

Usage: python paper_figures/fig_timing.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "timing"
FAMILY = "timing"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    table = figures.load_results(results_dir, FAMILY)
    fig, _ = figures.plot_timing(table)
    return figures.save(fig, out_dir, NAME)


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    for path in main(*sys.argv[1:]):
        print(path)
