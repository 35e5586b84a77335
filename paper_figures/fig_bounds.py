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


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
