"""Experiment runner: configs -> cells -> a tidy, resumable results store.

A *family* (``experiments/configs/<family>.py``) defines ``get_config(variant)`` (an ml_collections
``ConfigDict``) and ``sweep(variant)`` (a list of override dicts, the grid as data); ``variant`` is
``"full"`` or ``"smoke"`` (CPU-sized, for CI). Every grid point becomes one :class:`CellConfig`, a frozen
dataclass validated once here: the library never sees a ``ConfigDict``. A cell runs all its seeds and
returns one row per (seed, removal step).

One seed of a cell (:func:`run_seed`) does, with the public API only (``fit``, ``remove``, ``load``):

1. ``fit`` the certified model on the training rows with noise key ``jax.random.key(seed)``;
2. choose the removal order (``removal_order``): ``"random"`` (a seeded permutation), ``"class"`` (the rows
   of ``target_class`` first, shuffled, then the rest) or ``"influence"`` (highest influence first:
   influence = ``||grad_w l(w*; x_i, y_i)||_2 = ||dl/dz(z_i, y_i)||_2 ||x_i||_2``, the norm of the per-example
   loss gradient at the *initially* trained parameters ``w*``; computed once, not re-ranked after each
   removal; the rows that move the Newton step most and so spend the most residual);
3. ``remove`` the rows in batches of ``removal_batch`` until ``num_removals`` rows are gone, recording the
   residual bound, spent residual, budget, exact residual ``||grad L_b(w; D')||``, certified epsilon and
   test accuracy after every step;
4. at checkpoint steps (step 0, every ``checkpoint_every`` steps, and the last step) retrain from scratch
   on the retained rows with the *same* noise draw ``b`` (the model the unlearned one approximates) and
   record its accuracy, ``||w_unlearned - w_retrained||_2`` and the retrain time. Retraining every step is
   too costly, so elsewhere these columns are NaN.

The retrained reference is fitted on a fixed-shape copy of the training set in which the removed rows
are zeroed and ``l2_reg`` is scaled by ``n_retained / n``: a zero row adds a constant to the loss and
nothing to its gradient or Hessian, and ``(l2_reg n_retained / n) n / 2 = l2_reg n_retained / 2``, so
the objective (sum convention) and its minimiser are exactly those of a fit on the retained rows, while
the training code compiles once per cell instead of once per checkpoint. Its time therefore includes
the zeroed rows (an overestimate by ``num_removed / n``). With ``timing_repeats > 1`` it is refitted and
the fastest time kept (the first call may include compilation).

Reproducibility: on CPU the same cell gives the same numbers, bit for bit, in every column but the
timing ones (``TIMING_COLUMNS``), with the exact-Newton solvers ("cholesky", "cg"). The library's
"cached" solver (what ``solver="auto"`` picks for up to 2,048 parameters once ``n p^2 > 5e8``) decides
when to refactorise from measured wall times, so its steps (always certified) vary slightly from run to
run; configs that need reproducible trajectories pin ``solver``.

Seeds share shapes, so with ``vmap_seeds`` (the default) a cell trains all its seeds' initial models in
one vmapped, compiled call (:func:`certunlearn.fit_batch`), runs each seed's removal sequence (budget
checks and retrain decisions are host-side, so these stay a loop), and then fits every retrained
reference of every seed and checkpoint in vmapped calls, with a retained-row mask per reference (the
same objective as the zeroed-row fit above). Their ``train_seconds`` and ``reference_fit_seconds`` are
then the batch time divided by the batch size; ``vmap_seeds=False`` (the ``timing`` family) fits one
model at a time, so those columns are single-fit times.

Results store (``out/``)::

    cells/<key>.csv      one finished cell (its rows), written atomically; its presence = done
    cells/<key>.json     the cell's parameters, status, wall time (and error + traceback if it failed)
    results.csv          the combined table of the sweep's cells, assembled from cells/
    manifest.json        config, grid, per-cell status, git commit, package versions, device, seeds

``<key>`` is a stable hash of the cell's parameters (:func:`cell_key`). Re-running a sweep skips the cells
whose CSV exists (so an interrupted sweep resumes); a cell that raises is recorded (``status="error"``,
message in the table, traceback in the manifest and ``cells/<key>.json``), the sweep goes on, and the
failed cell is tried again on the next run. Warnings raised inside a cell (e.g. the library's note that
the guo calibration under-noises at a large epsilon) are recorded in the cell's manifest entry and
issued again once per cell. Every file is written to a temporary name in the same directory and moved
into place with ``os.replace``.

Columns of the table (one row per cell, seed and step): the cell's parameters (``classes`` as ``"2,4"``
or ``"all"``; ``sigma`` and ``residual_budget`` hold the values in force, whichever was given), ``family``,
``cell``, ``status``, ``error``, ``seed``, ``step``, ``event`` (``train``/``removal``/``retrain``/
``exhausted``), ``num_removed`` (rows removed so far), ``batch_size``, ``residual_bound`` (the step's
bound; after a (re)train the training residual), ``residual_spent``, ``exact_residual``,
``certified_epsilon``, ``retrained``, ``retrains``, ``solve_error``, ``remainder``, ``solver_steps``,
``converged``, ``test_accuracy`` (for ``loss="squared"``: test MSE), ``test_accuracy_retrained``,
``distance_to_retrained``, ``removal_seconds`` (the library's time of the Newton step and its
certificate), ``step_seconds`` (wall time of the ``remove`` call), ``retrain_seconds`` (the library's
retrain when the budget ran out, else 0), ``reference_fit_seconds`` (the from-scratch retrain at a
checkpoint), ``train_seconds`` (step 0: the initial fit), ``n_train``, ``n_test``, ``n_features``,
``solver_used`` (what ``solver="auto"`` resolved to).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import types
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ORDERS",
    "TIMING_COLUMNS",
    "CellConfig",
    "TaskCell",
    "apply_overrides",
    "atomic_write_text",
    "cell_key",
    "default_config",
    "environment",
    "load_config",
    "load_results",
    "parse_override",
    "removal_order",
    "run",
    "run_cell",
    "run_seed",
    "run_task_cell",
    "run_cells",
    "sweep",
]

ORDERS = ("random", "class", "influence")
VARIANTS = ("full", "smoke")
_LOSSES = ("logistic", "softmax", "squared")
_BOUNDS = ("worst-case", "data-dependent", "exact")
_CALIBRATIONS = ("guo", "analytic")
_KEY_LENGTH = 16

#: Columns that measure time; everything else in a table is a deterministic function of config and seed.
TIMING_COLUMNS = (
    "removal_seconds",
    "step_seconds",
    "retrain_seconds",
    "reference_fit_seconds",
    "train_seconds",
)

RESULTS_FILE = "results.csv"
MANIFEST_FILE = "manifest.json"
CELLS_DIR = "cells"


# ----------------------------------------------------------------------------------------------------
# The cell: a frozen, validated experiment configuration.


@dataclasses.dataclass(frozen=True)
class CellConfig:
    """One experiment cell: data, model, certificate, removal schedule and seeds.

    Names map to Guo et al. (2020, arXiv:1911.03030) as: ``l2_reg`` = lambda (sum convention,
    regulariser ``lambda n / 2 ||w||^2`` over the retained rows), ``sigma`` = sigma of the loss
    perturbation ``b``, ``residual_budget`` = epsilon' (the largest certified gradient residual),
    ``epsilon``/``delta`` = the target guarantee, ``removal_batch`` = m (remove-m).

    Attributes:
      family: the experiment family (a label for the results).
      dataset: a :func:`certunlearn.data.load` name ("digits", "fashion-mnist", "mnist", "synthetic").
      classes: ``(a, b)`` for a binary task, three or more ids or ``None`` (all) for multiclass.
      n_train, n_test: subsample sizes (``None``: all rows). data_seed: seeds the split and subsample.
      loss: "logistic" (binary), "softmax" (multiclass) or "squared".
      l2_reg: lambda > 0.
      sigma, residual_budget: at most one may be set (``fit``'s rule); with neither, ``fit``'s default.
      epsilon, delta: the target guarantee. calibration: "guo" or "analytic".
      bound: "worst-case", "data-dependent" or "exact". update: "guo" or "gradient".
      dtype, solver, train_method, on_exhausted: passed to :func:`certunlearn.fit`.
      removal_batch: rows removed per ``remove`` call (m). num_removals: rows removed in total (the last
        batch may be smaller).
      removal_order: "random", "class" or "influence" (module docstring).
      target_class: the original class id removed first when ``removal_order="class"``.
      checkpoint_every: steps between retrained-reference checkpoints (0: only the first and last step).
      stop_at_retrain: end a seed's run at its first retrain (for "removals before a retrain").
      timing_repeats: fits of the retrained reference per checkpoint (the fastest time is kept).
      cg_error_ratio: passed to :func:`certunlearn.fit` (CG's tolerance, relative to the last remainder).
      vmap_seeds: train the seeds' initial models, and then all their retrained references, in one
        vmapped call each (:func:`certunlearn.fit_batch`); their ``*_seconds`` are then the batch's time
        divided by its size. ``False`` (or ``timing_repeats > 1``) fits one model at a time, for timings.
      seeds: noise and removal-order seeds; every seed is one independent run of the cell.
    """

    family: str = "custom"
    dataset: str = "digits"
    classes: tuple[int, ...] | None = (3, 8)
    n_train: int | None = None
    n_test: int | None = None
    data_seed: int = 0
    loss: str = "logistic"
    l2_reg: float = 1e-3
    sigma: float | None = 1.0
    residual_budget: float | None = None
    epsilon: float = 1.0
    delta: float = 1e-4
    calibration: str = "analytic"
    bound: str = "data-dependent"
    update: str = "guo"
    dtype: str = "float64"
    solver: str = "auto"
    train_method: str = "newton"
    on_exhausted: str = "retrain"
    removal_batch: int = 1
    num_removals: int = 0
    removal_order: str = "random"
    target_class: int | None = None
    checkpoint_every: int = 0
    stop_at_retrain: bool = False
    timing_repeats: int = 1
    vmap_seeds: bool = True
    cg_error_ratio: float = 0.01
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        for name in ("family", "dataset", "loss", "calibration", "bound", "update", "dtype", "solver",
                     "train_method", "on_exhausted", "removal_order"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        _choose("loss", self.loss, _LOSSES)
        _choose("calibration", self.calibration, _CALIBRATIONS)
        _choose("bound", self.bound, _BOUNDS)
        _choose("removal_order", self.removal_order, ORDERS)
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not isinstance(self.classes, Iterable):
                raise ValueError(f"classes must be None or a tuple of class ids, got {self.classes!r}")
            set_("classes", tuple(_int("classes", c, minimum=0) for c in self.classes))
            if len(self.classes) < 2:
                raise ValueError(f"classes must list at least 2 class ids, got {self.classes!r}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                set_(name, _int(name, getattr(self, name), minimum=1))
        set_("data_seed", _int("data_seed", self.data_seed, minimum=0))
        set_("l2_reg", _float("l2_reg", self.l2_reg, positive=True))
        set_("epsilon", _float("epsilon", self.epsilon, positive=True))
        set_("delta", _float("delta", self.delta, positive=True))
        if not self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        if self.sigma is not None and self.residual_budget is not None:
            raise ValueError(
                f"set sigma or residual_budget, not both (got sigma={self.sigma!r}, "
                f"residual_budget={self.residual_budget!r}); set the other to None"
            )
        if self.sigma is not None:
            set_("sigma", _float("sigma", self.sigma, positive=False))
        if self.residual_budget is not None:
            set_("residual_budget", _float("residual_budget", self.residual_budget, positive=True))
        set_("removal_batch", _int("removal_batch", self.removal_batch, minimum=1))
        set_("num_removals", _int("num_removals", self.num_removals, minimum=0))
        set_("checkpoint_every", _int("checkpoint_every", self.checkpoint_every, minimum=0))
        set_("timing_repeats", _int("timing_repeats", self.timing_repeats, minimum=1))
        set_("cg_error_ratio", _float("cg_error_ratio", self.cg_error_ratio, positive=False))
        if self.target_class is not None:
            set_("target_class", _int("target_class", self.target_class, minimum=0))
        if self.removal_order == "class" and self.target_class is None:
            raise ValueError('removal_order="class" needs target_class (an original class id), got None')
        for name in ("stop_at_retrain", "vmap_seeds"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            set_(name, bool(getattr(self, name)))
        if isinstance(self.seeds, (int, np.integer)):
            set_("seeds", (self.seeds,))
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Iterable):
            raise ValueError(f"seeds must be a tuple of non-negative ints, got {self.seeds!r}")
        seeds = tuple(_int("seeds", s, minimum=0) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty tuple of distinct ints, got {self.seeds!r}")
        set_("seeds", seeds)

    @classmethod
    def from_config(cls, config: Any) -> CellConfig:
        """Builds a cell from a ``ConfigDict`` or a mapping; unknown keys are an error."""
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(names)}")
        return cls(**values)

    def params(self) -> dict[str, Any]:
        """The cell's parameters as JSON-compatible values (tuples as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def key(self) -> str:
        return cell_key(self)

    def columns(self) -> dict[str, Any]:
        """The cell's parameters as table columns (one value each; ``seeds`` is left to the rows)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "seeds":
                continue
            value = getattr(self, f.name)
            if f.name == "classes":
                value = "all" if value is None else ",".join(str(c) for c in value)
            out[f.name] = math.nan if value is None else value
        return out


def _task_value(name: str, value):
    """A setting as a hashable, JSON-compatible value: lists -> tuples, NumPy scalars -> Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_task_value(name, v) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite in a config, got {value!r}")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"{name} must be a str, number, bool, None or a tuple of those, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TaskCell:
    """One cell of a *task* family (:mod:`certunlearn.families`): settings run by a ``run_seed`` function.

    A config with a ``task`` field (``"package.module:function"``) is a task family: every other field but
    ``family`` and ``seeds`` is a setting, passed as a dict to ``function(settings, seed) -> list of rows``.

    >>> cell = TaskCell.from_config({"family": "f", "task": "m:run_seed", "seeds": [0, 1], "n": 5, "ab": [1, 2]})
    >>> cell.settings_dict(), cell.seeds, cell.columns()["ab"]
    ({'ab': (1, 2), 'n': 5}, (0, 1), '1,2')
    """

    family: str
    task: str
    settings: tuple[tuple[str, Any], ...]
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def from_config(cls, config: Any) -> TaskCell:
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        task = values.pop("task")
        family = values.pop("family", "custom")
        seeds = values.pop("seeds", (0,))
        if not isinstance(task, str) or task.count(":") != 1:
            raise ValueError(f'task must look like "package.module:function", got {task!r}')
        if isinstance(seeds, (int, np.integer)):
            seeds = (seeds,)
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
            raise ValueError(f"seeds must be a tuple of non-negative ints, got {seeds!r}")
        seeds = tuple(_int("seeds", s, minimum=0) for s in seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty tuple of distinct ints, got {seeds!r}")
        settings = tuple(sorted((str(k), _task_value(str(k), v)) for k, v in values.items()))
        return cls(family=str(family), task=task, settings=settings, seeds=seeds)

    def settings_dict(self) -> dict[str, Any]:
        return dict(self.settings)

    def params(self) -> dict[str, Any]:
        return _jsonable({"family": self.family, "task": self.task, **self.settings_dict(), "seeds": self.seeds})

    @property
    def key(self) -> str:
        return cell_key(self)

    def columns(self) -> dict[str, Any]:
        """Settings as table columns: tuples as ``"a,b"``, ``None`` as NaN."""
        out = {"family": self.family}
        for name, value in self.settings:
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            out[name] = math.nan if value is None else value
        return out

    def function(self):
        """The ``run_seed`` callable named by ``task``."""
        module_name, _, attr = self.task.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ValueError(f"task {self.task!r}: module {module_name} has no {attr!r}") from None


def run_task_cell(cell: TaskCell):
    """Runs every seed of a :class:`TaskCell` through its ``run_seed``; the rows as a DataFrame."""
    import pandas as pd

    fn = cell.function()
    rows = []
    for seed in cell.seeds:
        for r in fn(cell.settings_dict(), seed):
            rows.append({**cell.columns(), "cell": cell.key, "status": "ok", "error": "", "seed": seed, **r})
    return pd.DataFrame(rows)



def default_config(**changes):
    """An ml_collections ``ConfigDict`` holding every :class:`CellConfig` field, with ``changes`` applied.

    The starting point of every ``experiments/configs/<family>.py``.

    >>> cfg = default_config(family="demo", l2_reg=1e-2)
    >>> cfg.l2_reg, cfg.bound, CellConfig.from_config(cfg).l2_reg
    (0.01, 'data-dependent', 0.01)
    """
    import ml_collections

    values = {f.name: f.default for f in dataclasses.fields(CellConfig)}
    unknown = sorted(set(changes) - set(values))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(values)}")
    values.update(changes)
    return ml_collections.ConfigDict(values)


def _choose(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _int(name, value, *, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _float(name, value, *, positive):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = ok and math.isfinite(float(value)) and (float(value) > 0 if positive else float(value) >= 0)
    if not ok:
        rel = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rel}, got {value!r}")
    return float(value)


def cell_key(cell: CellConfig) -> str:
    """A stable hash of the cell's parameters (SHA-256 of their canonical JSON), 16 hex digits.

    Floats are written with ``repr`` (shortest round trip), so the key does not depend on how a value
    was spelled (``1e-3`` and ``0.001`` give the same key), nor on the Python session.

    >>> cell_key(CellConfig(l2_reg=1e-3)) == cell_key(CellConfig(l2_reg=0.001))
    True
    >>> cell_key(CellConfig(l2_reg=1e-3)) == cell_key(CellConfig(l2_reg=1e-2))
    False
    """
    text = json.dumps(cell.params(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_LENGTH]


# ----------------------------------------------------------------------------------------------------
# Loading configs and applying overrides.


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _find_config_file(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".py" or os.sep in name or "/" in name:
        if path.exists():
            return path
        raise FileNotFoundError(f"config file {name!r} does not exist")
    for base in (Path.cwd(), _repo_root()):
        candidate = base / "experiments" / "configs" / f"{name}.py"
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"no config named {name!r}: pass a path to a config file or a family name found in "
        f"experiments/configs/ (looked in {Path.cwd()} and {_repo_root()})"
    )


def _import_file(path: Path) -> types.ModuleType:
    path = path.resolve()
    name = "certunlearn_config_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _call_variant(fn, variant: str):
    try:
        return fn(variant)
    except TypeError as err:  # a get_config()/sweep() without a variant argument
        if "positional argument" not in str(err):
            raise
        if variant != "full":
            raise ValueError(f"{fn.__module__}.{fn.__name__} takes no variant, so it has no {variant!r} variant")
        return fn()


def load_config(config, *, smoke: bool = False):
    """Resolves a config to ``(config_dict, grid)``.

    Args:
      config: a path to a config file (``"experiments/configs/budget.py"``, optionally with the
        ml_collections suffix ``":smoke"``), a family name (``"budget"``, looked up in
        ``experiments/configs/`` under the working directory or the repository), a module with
        ``get_config``, or a ``ConfigDict`` (then the grid is one empty override).
      smoke: use the CPU-sized ``"smoke"`` variant.

    Returns:
      ``(ConfigDict, list of override dicts)``; the grid is ``[{}]`` when the config has no ``sweep``.
    """
    variant = "smoke" if smoke else "full"
    if hasattr(config, "to_dict") and not isinstance(config, types.ModuleType):
        return _copy_config(config), [{}]
    if isinstance(config, (str, os.PathLike)):
        text = os.fspath(config)
        base, sep, suffix = text.rpartition(":")
        if sep and suffix in VARIANTS and not (len(base) == 1 and base.isalpha()):  # not a drive letter
            text, variant = base, ("smoke" if smoke else suffix)
        module = _import_file(_find_config_file(text))
    elif isinstance(config, types.ModuleType):
        module = config
    else:
        raise TypeError(f"config must be a path, a family name, a module or a ConfigDict, got {type(config)}")
    if not hasattr(module, "get_config"):
        raise ValueError(f"config module {module.__name__} has no get_config()")
    cfg = _call_variant(module.get_config, variant)
    grid = _call_variant(module.sweep, variant) if hasattr(module, "sweep") else [{}]
    grid = [dict(g) for g in grid] or [{}]
    return cfg, grid


def _copy_config(config):
    import ml_collections

    return ml_collections.ConfigDict(config.to_dict())


def parse_override(text: str) -> tuple[str, Any]:
    """Parses ``"key=value"``; the value is a Python literal when it parses as one, else a string.

    >>> parse_override("l2_reg=1e-3"), parse_override("classes=(2, 4)"), parse_override("bound=exact")
    (('l2_reg', 0.001), ('classes', (2, 4)), ('bound', 'exact'))
    >>> parse_override("sigma=None")
    ('sigma', None)
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"an override must look like key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return key, value


def apply_overrides(config, overrides):
    """A copy of ``config`` with ``overrides`` (a mapping or ``"key=value"`` strings) applied.

    Only existing keys may be set (a typo is an error, not a new field).
    """
    out = _copy_config(config)
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        if key not in out:
            raise ValueError(f"unknown config key {key!r}; known keys: {sorted(out.keys())}")
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


# ----------------------------------------------------------------------------------------------------
# Running one cell.


@functools.lru_cache(maxsize=8)
def _dataset(name, classes, n_train, n_test, data_seed, dtype):
    from certunlearn import data

    return data.load(name, classes=classes, n_train=n_train, n_test=n_test, seed=data_seed, dtype=dtype)


def _load_dataset(cell: CellConfig):
    return _dataset(cell.dataset, cell.classes, cell.n_train, cell.n_test, cell.data_seed, cell.dtype)


def _fit_kwargs(cell: CellConfig, num_classes: int | None) -> dict[str, Any]:
    kwargs = dict(
        loss=cell.loss, l2_reg=cell.l2_reg, epsilon=cell.epsilon, delta=cell.delta, sigma=cell.sigma,
        residual_budget=cell.residual_budget, calibration=cell.calibration, bound=cell.bound,
        dtype=cell.dtype, solver=cell.solver, update=cell.update, on_exhausted=cell.on_exhausted,
        train_method=cell.train_method, cg_error_ratio=cell.cg_error_ratio,
    )
    if cell.loss == "softmax":
        kwargs["num_classes"] = num_classes
    return kwargs


def _target_label(cell: CellConfig, dataset) -> float | int:
    target = cell.target_class
    if dataset.task == "binary":
        if target not in dataset.classes:
            raise ValueError(f"target_class must be one of classes={dataset.classes}, got {target!r}")
        return 1.0 if target == dataset.classes[0] else -1.0
    if dataset.classes is None:
        if not 0 <= target < dataset.num_classes:
            raise ValueError(f"target_class must be in 0..{dataset.num_classes - 1}, got {target!r}")
        return target
    if target not in dataset.classes:
        raise ValueError(f"target_class must be one of classes={dataset.classes}, got {target!r}")
    return dataset.classes.index(target)


def _influence(loss: str, params, X, y) -> np.ndarray:
    """``||grad_w l(w; x_i, y_i)||_2 = ||dl/dz(z_i, y_i)||_2 * ||x_i||_2`` for each row (GLM losses)."""
    import jax.numpy as jnp

    from certunlearn import get_loss

    z = jnp.asarray(X) @ params
    dz = np.asarray(get_loss(loss).dz(z, jnp.asarray(y)), dtype=np.float64)
    dz_norm = np.abs(dz) if dz.ndim == 1 else np.sqrt(np.sum(dz * dz, axis=1))
    return dz_norm * np.sqrt(np.sum(np.asarray(X, np.float64) ** 2, axis=1))


def removal_order(cell: CellConfig, seed: int, dataset, model) -> np.ndarray:
    """The first ``cell.num_removals`` training-row indices to remove, in order (module docstring).

    Ties (and the order inside the targeted class) are broken by a permutation seeded with ``seed``.
    """
    n = dataset.n_train
    if cell.num_removals >= n:
        raise ValueError(f"num_removals must be < n_train = {n} (one row must remain), got {cell.num_removals}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    perm = rng.permutation(n)
    if cell.removal_order == "random":
        order = perm
    elif cell.removal_order == "class":
        in_class = np.asarray(dataset.y_train)[perm] == _target_label(cell, dataset)
        order = np.concatenate([perm[in_class], perm[~in_class]])
    else:
        score = _influence(cell.loss, model.params, dataset.X_train, dataset.y_train)
        order = perm[np.argsort(-score[perm], kind="stable")]
    return order[: cell.num_removals]


def _checkpoints(cell: CellConfig, num_steps: int) -> set[int]:
    points = {0, num_steps}
    if cell.checkpoint_every:
        points.update(range(0, num_steps + 1, cell.checkpoint_every))
    return points


def _reference_fit(cell, dataset, model, draw_key, fit_kwargs):
    """Retrains on ``model.retained`` with the noise draw of ``draw_key`` (module docstring)."""
    import certunlearn as cu

    retained = np.asarray(model.retained)
    X = np.where(retained[:, None], dataset.X_train, 0.0).astype(dataset.X_train.dtype)
    pad = 0 if cell.loss == "softmax" else (1.0 if cell.loss == "logistic" else 0.0)
    y = np.where(retained, dataset.y_train, pad).astype(dataset.y_train.dtype)
    kwargs = dict(fit_kwargs)
    # Same noise b: the same sigma and the key whose first split drew it; bound="worst-case" skips the
    # spectral norm that only certificates need.
    kwargs.update(
        l2_reg=cell.l2_reg * retained.sum() / retained.size, sigma=model.calibration.sigma,
        residual_budget=None, bound="worst-case",
    )
    best, ref = math.inf, None
    for _ in range(cell.timing_repeats):
        start = time.perf_counter()
        ref = cu.fit(X, y, key=draw_key, **kwargs)
        ref.params.block_until_ready()
        best = min(best, time.perf_counter() - start)
    return ref, best


_NAN_ROW = dict(
    test_accuracy_retrained=math.nan, distance_to_retrained=math.nan, reference_fit_seconds=math.nan,
)


def _check_task(cell: CellConfig, dataset) -> None:
    if cell.loss == "logistic" and dataset.task != "binary":
        raise ValueError(f'loss="logistic" needs a binary task (classes=(a, b)), got classes={cell.classes!r}')
    if cell.loss == "softmax" and dataset.task != "multiclass":
        raise ValueError(f'loss="softmax" needs a multiclass task (classes=None or 3+ ids), got {cell.classes!r}')


def run_seed(cell: CellConfig, seed: int) -> list[dict[str, Any]]:
    """One seed of a cell: fit, remove in order, measure (module docstring). Returns the rows."""
    import jax

    import certunlearn as cu

    dataset = _load_dataset(cell)
    _check_task(cell, dataset)
    fit_kwargs = _fit_kwargs(cell, dataset.num_classes)
    start = time.perf_counter()
    model = cu.fit(dataset.X_train, dataset.y_train, key=jax.random.key(seed), **fit_kwargs)
    model.params.block_until_ready()
    train_seconds = time.perf_counter() - start

    def reference(model, draw_key):
        try:
            return _reference_fit(cell, dataset, model, draw_key, fit_kwargs)
        except cu.CertificationError:
            return None

    return _removal_rows(cell, seed, dataset, model, train_seconds, reference)


def _reference_row(model, ref, seconds, dataset) -> dict[str, Any]:
    import jax.numpy as jnp

    distance = float(jnp.linalg.norm(jnp.asarray(model.params - ref.params, jnp.float64)))
    return dict(test_accuracy_retrained=ref.score(dataset.X_test, dataset.y_test),
                distance_to_retrained=distance, reference_fit_seconds=seconds)


def _removal_rows(cell: CellConfig, seed: int, dataset, model, train_seconds: float, reference):
    """Removes the rows of ``removal_order`` from ``model`` (fitted with ``jax.random.key(seed)``) in
    batches and records every step.

    ``reference(model, draw_key)`` gives ``(retrained model, seconds)`` at a checkpoint, or ``None`` to leave
    the reference columns NaN (or to fill them in later: the batched path records what to fit).
    """
    import jax

    import certunlearn as cu

    draw_key = jax.random.key(seed)  # the key whose first split drew the current noise b
    order = removal_order(cell, seed, dataset, model)
    batches = [order[i : i + cell.removal_batch] for i in range(0, len(order), cell.removal_batch)]
    checkpoints = _checkpoints(cell, len(batches))

    def row(step, event, model, report=None, **extra):
        cert = model.certificate()
        out = dict(
            seed=seed,
            step=step,
            event=event,
            num_removed=int(model.ledger.removals),
            batch_size=0 if report is None else len(report.indices),
            residual_bound=model.training_residual if report is None else float(report.residual_bound),
            residual_spent=float(cert.residual_spent),
            residual_budget=float(cert.residual_budget),
            sigma=float(cert.sigma),
            exact_residual=model.exact_residual(),
            certified_epsilon=float(cert.epsilon),
            retrained=event == "retrain",
            retrains=int(cert.retrains),
            solve_error=math.nan if report is None else float(report.solve_error),
            remainder=math.nan if report is None else float(report.remainder),
            solver_steps=0 if report is None else int(report.solver_steps),
            converged=True if report is None else bool(report.converged),
            test_accuracy=model.score(dataset.X_test, dataset.y_test),
            removal_seconds=math.nan if report is None else float(report.seconds),
            step_seconds=math.nan,
            retrain_seconds=math.nan if report is None else float(report.retrain_seconds),
            train_seconds=math.nan,
            **_NAN_ROW,
        )
        out.update(extra)
        return out

    rows = [row(0, "train", model, train_seconds=train_seconds,
                test_accuracy_retrained=model.score(dataset.X_test, dataset.y_test),
                distance_to_retrained=0.0, reference_fit_seconds=train_seconds)]
    for step, batch in enumerate(batches, start=1):
        previous = model
        start = time.perf_counter()
        try:
            model, report = cu.remove(model, batch)
        except cu.BudgetExhaustedError:
            rows.append(row(step, "exhausted", previous, residual_bound=math.nan, converged=False))
            break
        model.params.block_until_ready()
        step_seconds = time.perf_counter() - start
        if report.retrained:
            draw_key = previous.key
        extra = {}
        if step in checkpoints:
            got = reference(model, draw_key)
            if got is not None:
                extra = _reference_row(model, *got, dataset)
        rows.append(row(step, "retrain" if report.retrained else "removal", model, report,
                        step_seconds=step_seconds, **extra))
        if cell.stop_at_retrain and report.retrained:
            break
    # The solver "auto" resolved to (the model's config field; the cell's own value if it is absent).
    solver_used = str(getattr(getattr(model, "config", None), "solver", cell.solver))
    for r in rows:
        r.update(n_train=dataset.n_train, n_test=dataset.n_test, n_features=dataset.n_features,
                 solver_used=solver_used)
    return rows


_REFERENCE_CHUNK = 16  # retrained references per vmapped call (memory: a dense Hessian each for small p)


def _run_seeds_batched(cell: CellConfig) -> list[dict[str, Any]]:
    """Every seed of ``cell``: initial fits in one vmapped call, the removal sequences one seed at a time
    (their budget and retrain decisions are host-side), then every retrained reference in vmapped calls."""
    import jax

    import certunlearn as cu

    dataset = _load_dataset(cell)
    _check_task(cell, dataset)
    fit_kwargs = _fit_kwargs(cell, dataset.num_classes)
    start = time.perf_counter()
    models = cu.fit_batch(dataset.X_train, dataset.y_train, keys=[jax.random.key(s) for s in cell.seeds],
                          **fit_kwargs)
    jax.block_until_ready([m.params for m in models])
    train_seconds = (time.perf_counter() - start) / len(models)

    jobs = []  # (seed, step, unlearned model, draw key) of each checkpoint, fitted below

    rows = []
    for seed, model in zip(cell.seeds, models):
        def defer(m, draw_key, seed=seed):
            jobs.append((seed, m.ledger.removals, m, draw_key))
            return None

        rows.extend(_removal_rows(cell, seed, dataset, model, train_seconds, defer))
    index = {(r["seed"], r["num_removed"], r["step"]): r for r in rows}
    by_job = {}
    for seed, removed, _, _ in jobs:  # the row of each job: the last row of that seed with that count
        candidates = [k for k in index if k[0] == seed and k[1] == removed]
        by_job[(seed, removed)] = index[max(candidates, key=lambda k: k[2])]
    kwargs = dict(fit_kwargs, residual_budget=None, bound="worst-case")
    for lo in range(0, len(jobs), _REFERENCE_CHUNK):
        chunk = jobs[lo : lo + _REFERENCE_CHUNK]
        kwargs["sigma"] = chunk[0][2].calibration.sigma
        start = time.perf_counter()
        try:
            refs = cu.fit_batch(dataset.X_train, dataset.y_train, keys=[j[3] for j in chunk],
                                retained=np.stack([j[2].retained for j in chunk]), **kwargs)
            jax.block_until_ready([r.params for r in refs])
        except cu.CertificationError:
            continue  # as for one reference: its columns stay NaN
        seconds = (time.perf_counter() - start) / len(chunk)
        for (seed, removed, model, _), ref in zip(chunk, refs):
            by_job[(seed, removed)].update(_reference_row(model, ref, seconds, dataset))
    return rows


def run_cell(cell: CellConfig):
    """Runs every seed of ``cell`` and returns its rows as a DataFrame (cell columns first).

    With ``vmap_seeds`` (and ``timing_repeats == 1``) the seeds' fits and references are batched
    (:func:`_run_seeds_batched`); otherwise one seed after the other (:func:`run_seed`).
    """
    import pandas as pd

    if cell.vmap_seeds and cell.timing_repeats == 1 and len(cell.seeds) > 1:
        rows = _run_seeds_batched(cell)
    else:
        rows = []
        for seed in cell.seeds:
            rows.extend(run_seed(cell, seed))
    table = pd.DataFrame(rows)
    params = cell.columns()
    # The rows hold the values in force: the budget and sigma whichever was given, the sizes loaded.
    for name in ("residual_budget", "sigma", "n_train", "n_test"):
        params.pop(name)
    front = pd.DataFrame({**params, "cell": cell.key, "status": "ok", "error": ""}, index=table.index)
    return pd.concat([front, table], axis=1)


# ----------------------------------------------------------------------------------------------------
# The store.


def atomic_write_text(path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    A reader sees the old file or the new one, never a partial one; on failure the temporary file is
    removed and the old file is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_table(path, table) -> None:
    atomic_write_text(path, table.to_csv(index=False))


def _write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n")


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def load_results(out):
    """The combined table of a results folder (``results.csv``) as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(Path(out) / RESULTS_FILE, keep_default_na=True)


def _read_cell(path):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=True)


def _error_table(cell, message: str):
    import pandas as pd

    params = cell.columns()
    extra = {} if isinstance(cell, TaskCell) else {"step": math.nan}
    return pd.DataFrame([{**params, "cell": cell.key, "status": "error", "error": message, "seed": math.nan,
                          **extra}])


def _versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in ("certunlearn", "jax", "jaxlib", "optax", "numpy", "scipy", "pandas", "dp-accounting",
                 "ml_collections", "matplotlib", "scikit-learn", "flax"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git() -> dict[str, Any]:
    root = _repo_root()

    def git(*args):
        result = subprocess.run(["git", *args], check=False, cwd=root, capture_output=True, text=True, timeout=30)
        return result.stdout.strip() if result.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def environment() -> dict[str, Any]:
    """Git commit, package versions, device and host: what a manifest records about the run."""
    import jax

    devices = jax.devices()
    return {
        "git": _git(),
        "versions": _versions(),
        "device": {
            "backend": jax.default_backend(),
            "devices": [str(d) for d in devices],
            "device_kind": devices[0].device_kind if devices else None,
            "x64": bool(jax.config.jax_enable_x64),
        },
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                 "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "argv": list(sys.argv),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def sweep(config, *, out, smoke: bool = False, overrides: Sequence[str] | Mapping = (), progress: bool = True):
    """Runs every cell of a config's grid into ``out`` and returns the combined table.

    Each grid entry is applied to the config, then ``overrides`` (so ``--set`` wins over the grid;
    grid points that become identical are run once). A config with a ``task`` field is a task family
    (:class:`TaskCell`, :mod:`certunlearn.families`); otherwise every cell is a removal sequence
    (:class:`CellConfig`). The store is :func:`run_cells`'s.

    Args:
      config: what :func:`load_config` accepts.
      out: the results folder (created if needed).
      smoke: the config's CPU-sized "smoke" variant.
      overrides: ``"key=value"`` strings or a mapping applied to every cell.
      progress: show a tqdm progress bar over cells.

    Returns:
      The combined table (a pandas DataFrame), as stored in ``out/results.csv``.
    """
    base, grid = load_config(config, smoke=smoke)
    base = apply_overrides(base, overrides)
    make, run_one = (TaskCell.from_config, run_task_cell) if "task" in base else (CellConfig.from_config, run_cell)
    cells: dict[str, Any] = {}
    for entry in grid:
        cell = make(apply_overrides(apply_overrides(base, entry), overrides))
        cells.setdefault(cell.key, cell)
    manifest = {
        "family": str(base.get("family", "custom")),
        "variant": "smoke" if smoke or (isinstance(config, (str, os.PathLike))
                                        and os.fspath(config).endswith(":smoke")) else "full",
        "config": base.to_dict(),
        "overrides": list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides),
        "sweep": grid,
    }
    return run_cells(cells, out=out, manifest=manifest, run_cell=run_one, error_table=_error_table,
                     progress=progress)


def run_cells(cells: Mapping[str, Any], *, out, manifest: Mapping[str, Any], run_cell, error_table,
              summarize=None, progress: bool = True):
    """The resumable results store shared by every family: runs ``run_cell(cell)`` for each cell not done yet.

    Finished cells (``out/cells/<key>.csv``) are skipped; a cell that raises is recorded (status "error",
    message, traceback) and the loop goes on; ``results.csv`` and ``manifest.json`` are rewritten atomically
    after every cell and at the end (also on interruption, which is then re-raised).

    Args:
      cells: ``{key: cell}``; a cell has ``params()`` (JSON-compatible) and ``seeds``.
      out: the results folder (created if needed).
      manifest: the family's entries of ``manifest.json`` (``family``, ``variant``, ``config``, ...); the
        environment, seeds, per-cell status and wall time are added here.
      run_cell: ``cell -> DataFrame`` of the cell's rows.
      error_table: ``(cell, message) -> DataFrame``, the row recorded for a failed cell.
      summarize: optional ``table -> dict`` of a finished cell's headline numbers, recorded in its manifest
        entry and shown on the progress bar.
      progress: show a tqdm progress bar over cells.

    Returns:
      The combined table (a pandas DataFrame), as stored in ``out/results.csv``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    out = Path(out)
    cells_dir = out / CELLS_DIR
    cells_dir.mkdir(parents=True, exist_ok=True)
    family = str(manifest.get("family", "custom"))
    manifest = {
        **manifest,
        "seeds": sorted({s for c in cells.values() for s in c.seeds}),
        "started": _now(),
        "finished": None,
        "complete": False,
        **environment(),
        "cells": {k: {"params": c.params(), "status": "pending"} for k, c in cells.items()},
    }

    def record(key, **info):
        manifest["cells"][key].update(info)

    def assemble():
        tables = []
        for key, cell in cells.items():
            path = cells_dir / f"{key}.csv"
            if path.exists():
                tables.append(_read_cell(path))
            elif manifest["cells"][key]["status"] == "error":
                tables.append(error_table(cell, manifest["cells"][key]["error"]))
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        _write_table(out / RESULTS_FILE, table)
        return table

    start_all = time.perf_counter()
    interrupted = False
    try:
        bar = tqdm(cells.items(), total=len(cells), desc=f"{family} cells", disable=not progress, unit="cell")
        for key, cell in bar:
            path = cells_dir / f"{key}.csv"
            if path.exists():
                record(key, status="ok", skipped=True)
                continue
            start = time.perf_counter()
            record(key, status="running", started=_now())
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    table = run_cell(cell)
            except Exception as err:  # noqa: BLE001 - a failed cell is data; the sweep goes on
                seconds = time.perf_counter() - start
                message = f"{type(err).__name__}: {err}"
                info = dict(status="error", error=message, traceback=traceback.format_exc(), seconds=seconds)
                record(key, **info)
                _write_json(cells_dir / f"{key}.json", {"params": cell.params(), **info})
                if progress:
                    bar.write(f"cell {key} failed: {message}")
            else:
                seconds = time.perf_counter() - start
                messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
                for message in messages:  # once per cell, not once per fit
                    warnings.warn(f"cell {key}: {message}", RuntimeWarning, stacklevel=2)
                summary = summarize(table) if summarize is not None else {}
                info = dict(status="ok", seconds=seconds, finished=_now(), warnings=messages, **summary)
                _write_json(cells_dir / f"{key}.json", {"params": cell.params(), **info})
                _write_table(path, table)  # written last: its presence marks the cell done
                record(key, **info)
                if summary:
                    bar.set_postfix(summary)
            _write_json(out / MANIFEST_FILE, manifest)
    except BaseException:
        interrupted = True
        raise
    finally:
        for key, info in manifest["cells"].items():
            if info["status"] == "running":
                info["status"] = "interrupted"
        manifest["finished"] = _now()
        manifest["wall_seconds"] = time.perf_counter() - start_all
        manifest["complete"] = not interrupted and all(
            i["status"] in ("ok", "error") for i in manifest["cells"].values())
        manifest["failed"] = sorted(k for k, i in manifest["cells"].items() if i["status"] == "error")
        table = assemble()
        _write_json(out / MANIFEST_FILE, manifest)
    return load_results(out) if len(table) else table


def run(config, *, overrides: Sequence[str] | Mapping = (), out, smoke: bool = False, progress: bool = True):
    """Runs one cell: the config (its ``get_config``, no grid) with ``overrides``, into ``out``.

    The same store as :func:`sweep` (cells/, results.csv, manifest.json), with a one-cell grid.
    Returns the cell's table.
    """
    smoke = smoke or (isinstance(config, (str, os.PathLike)) and os.fspath(config).endswith(":smoke"))
    cfg, _ = load_config(config, smoke=smoke)
    return sweep(cfg, out=out, smoke=smoke, overrides=overrides, progress=progress)
