"""The ``certunlearn`` command line: ``certunlearn <subcommand> [options]``.

Subcommands are registered in ``SUBCOMMANDS`` as ``name -> Subcommand(help, add_arguments, handler)``:
``add_arguments(parser)`` declares the options and ``handler(args) -> int`` runs them and returns the exit
status. A new subcommand (run, sweep, figures, audit, bench) is one more entry; its handler imports its
module inside the function, so a broken or slow subcommand never affects the others.

Exit status: 0 on success; 2 for invalid arguments (argparse errors and ``ValueError`` raised by the
library, reported as one line on stderr); 1 when a certificate cannot be issued or data are missing.

    certunlearn demo                                    # digits 3 vs 8, 100 removals
    certunlearn demo --dataset fashion-mnist --classes 2 4
    python -m certunlearn demo --removals 20 --epsilon 0.5 --out runs/eps05
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main"]

PROG = "certunlearn"


class Subcommand(NamedTuple):
    """One ``certunlearn`` subcommand.

    Attributes:
      help: a one-line description for ``certunlearn --help``.
      add_arguments: declares the subcommand's options on its parser.
      handler: runs the parsed arguments; returns the exit status.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------------------------------
# demo

_DATASETS = ("digits", "fashion-mnist", "mnist", "synthetic")  # certunlearn.data.available(), sans import
_CALIBRATIONS = ("guo", "analytic")
_BOUNDS = ("worst-case", "data-dependent", "exact")


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=_DATASETS, default="digits", help="data set (default: digits)")
    parser.add_argument("--classes", nargs=2, type=int, metavar=("A", "B"), default=None,
                        help="class A -> +1, class B -> -1 "
                             "(default: 3 8 digits/mnist, 2 4 fashion-mnist, 0 1 synthetic)")
    parser.add_argument("--removals", type=int, default=100, metavar="N",
                        help="rows to remove, one at a time (default: 100)")
    parser.add_argument("--l2-reg", type=float, default=None, metavar="LAMBDA",
                        help="lambda of (lambda n/2)||w||^2 (default: 1e-2 digits/synthetic, 1e-3 (fashion-)mnist)")
    parser.add_argument("--epsilon", type=float, default=1.0, help="target epsilon (default: 1)")
    parser.add_argument("--delta", type=float, default=1e-4, help="target delta (default: 1e-4)")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--sigma", type=float, default=None,
                       help="noise std of the loss perturbation (default: 0.1 digits/synthetic, 0.05 (fashion-)mnist)")
    noise.add_argument("--budget", type=float, default=None, metavar="BETA",
                       help="residual budget instead of --sigma; sigma follows from (epsilon, delta)")
    parser.add_argument("--calibration", choices=_CALIBRATIONS, default="analytic",
                        help="sigma <-> budget calibration (default: analytic)")
    parser.add_argument("--bound", choices=_BOUNDS, default="data-dependent",
                        help="per-removal residual bound (default: data-dependent)")
    parser.add_argument("--retrain-every", type=int, default=None, metavar="K",
                        help="compare with a model retrained from scratch every K removals "
                             "(default: 10 digits/synthetic, 25 (fashion-)mnist)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise, removal order and split (default: 0)")
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="output folder for results.json and demo.png (default: runs/demo)")
    parser.add_argument("--float32", action="store_true",
                        help="train and remove in float32 (certificates stay float64)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _demo(args: argparse.Namespace) -> int:
    from certunlearn.demo import run_demo

    run_demo(
        dataset=args.dataset,
        classes=args.classes,
        num_removals=args.removals,
        l2_reg=args.l2_reg,
        epsilon=args.epsilon,
        delta=args.delta,
        sigma=args.sigma,
        residual_budget=args.budget,
        calibration=args.calibration,
        bound=args.bound,
        seed=args.seed,
        out=args.out,
        dtype="float32" if args.float32 else "float64",
        progress=not args.no_progress,
        retrain_every=args.retrain_every,
    )
    return 0


# ----------------------------------------------------------------------------------------------------
# run, sweep, figures


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config: a family name (e.g. budget) or a path to "
                                       "experiments/configs/<family>.py")
    parser.add_argument("--out", required=True, help="results folder (resumable: finished cells are skipped)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set l2_reg=1e-3 (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="the CPU-sized smoke variant of the config")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run(args: argparse.Namespace) -> int:
    from certunlearn import runner

    table = runner.run(args.config, overrides=args.overrides, out=args.out, smoke=args.smoke,
                       progress=not args.no_progress)
    print(f"{len(table)} rows -> {args.out}/results.csv")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from certunlearn import runner

    table = runner.sweep(args.config, out=args.out, smoke=args.smoke, overrides=args.overrides,
                         progress=not args.no_progress)
    print(f"{len(table)} rows -> {args.out}/results.csv")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from certunlearn import audit_sweep

    table = audit_sweep.sweep(args.config, out=args.out, smoke=args.smoke, overrides=args.overrides,
                              progress=not args.no_progress)
    ok = table[table["status"] == "ok"]
    flagged, sound = ok["flagged"].astype(bool), ok["sound_mechanism"].astype(bool)
    print(f"{len(table)} rows -> {args.out}/results.csv; flagged: {int((flagged & sound).sum())} of "
          f"{int(sound.sum())} sound audits, {int((flagged & ~sound).sum())} of {int((~sound).sum())} broken ones; "
          f"{table['cell'].nunique() - ok['cell'].nunique()} failed cell(s)")
    return 0


def _add_figures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="folder holding sweep results (searched recursively)")
    parser.add_argument("--out", default=None, help="where to write the figures (default: RESULTS/figures)")


def _figures(args: argparse.Namespace) -> int:
    import os

    from certunlearn import figures

    paths = figures.make_all(args.results, args.out or os.path.join(args.results, "figures"))
    for path in paths:
        print(path)
    return 0


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few minutes instead of the full tables")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the tables")


def _bench(args: argparse.Namespace) -> int:
    try:
        from benchmarks import removal as bench
    except ImportError:
        raise FileNotFoundError("the benchmarks live in the repository's benchmarks/ folder: run "
                                "`certunlearn bench` from a clone of the repository") from None
    bench.main((["--quick"] if args.quick else []) + ["--out", args.out])
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand(
        "remove rows one at a time from a certified model, compare with retraining, plot",
        _add_demo_arguments,
        _demo,
    ),
    "run": Subcommand("run one experiment config (no grid) into a results folder", _add_config_arguments, _run),
    "sweep": Subcommand("run an experiment config's whole grid, resumably", _add_config_arguments, _sweep),
    "audit": Subcommand("empirical epsilon audits of a config's grid: certified epsilon vs audited epsilon_LB, "
                        "resumably", _add_config_arguments, _audit),
    "figures": Subcommand("rebuild every figure from stored results (never trains)", _add_figures_arguments,
                          _figures),
    "bench": Subcommand("removal benchmarks: latency of each path against retraining", _add_bench_arguments,
                        _bench),
}


# ----------------------------------------------------------------------------------------------------
# main


def build_parser() -> argparse.ArgumentParser:
    """The ``certunlearn`` parser with one sub-parser per entry of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Certified machine unlearning in JAX (Guo et al. 2020, arXiv:1911.03030)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("certunlearn")
    except metadata.PackageNotFoundError:
        return "unknown"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``certunlearn`` on ``argv`` (default ``sys.argv[1:]``) and returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on bad usage, 0 after --help / --version
        return exit_.code if isinstance(exit_.code, int) else 2
    where = f"{PROG} {args.command}"
    try:
        return int(args.handler(args))
    except ValueError as error:
        print(f"{where}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (RuntimeError, FileNotFoundError) as error:
        # CertificationError (a RuntimeError) and DataNotFoundError (a FileNotFoundError) are not usage errors.
        print(f"{where}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
