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


def main(results_dir, out_dir="figures") -> list[Path]:
    """Loads the results, computes the statistics over seeds, plots and saves; returns [png, pdf]."""
    return figures.make_figure(NAME, results_dir, out_dir)


if __name__ == "__main__":
    sys.exit(figures.script_main(NAME, __doc__))
