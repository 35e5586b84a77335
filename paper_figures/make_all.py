"""Rebuilds every paper figure (PNG and PDF) from stored results, by running each fig_*.py script.

Never trains anything. A figure whose family has no results under RESULTS_DIR is skipped with a
warning; it is an error when no figure can be built.

Usage: python paper_figures/make_all.py RESULTS_DIR [OUT_DIR]
  RESULTS_DIR: a root with one results folder per family (results/accuracy, results/budget, ...).
  OUT_DIR: where the figures go (default: figures/).
"""

import importlib.util
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The figure scripts, in order."""
    return sorted(HERE.glob("fig_*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"paper_figures_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(results_dir, out_dir="figures") -> list[Path]:
    """Runs every ``fig_*.py`` script's ``main(results_dir, out_dir)``; returns the files written."""
    paths, missing = [], []
    for script in scripts():
        try:
            paths.extend(_load(script).main(results_dir, out_dir))
        except FileNotFoundError as err:
            missing.append(script.name)
            warnings.warn(f"{script.name} skipped: {err}", stacklevel=2)
    if not paths:
        raise FileNotFoundError(f"no results under {results_dir} for any figure ({', '.join(missing)})")
    return paths


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    for path in main(*sys.argv[1:]):
        print(path)
