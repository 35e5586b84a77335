"""Figure 3: worst-case and data-dependent bounds vs the exact gradient residual against removals (log scale).

Reads the stored results of the ``bounds`` family (never trains anything) and writes
OUT_DIR/bounds.png and OUT_DIR/bounds.pdf.

Usage: python paper_figures/fig_bounds.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: the family's results folder, or a root with one folder per family.
"""

import sys
from pathlib import Path

from certunlearn import figures

NAME = "bounds"
FAMILY = "bounds"


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    table = figures.load_results(results_dir, FAMILY)
    fig, _ = figures.plot_bounds(table)
    return figures.save(fig, out_dir, NAME)


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    for path in main(*sys.argv[1:]):
        print(path)
