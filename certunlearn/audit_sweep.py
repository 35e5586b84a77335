"""Audit sweeps: every cell of an audit config's grid through :func:`certunlearn.audit.run_audit`, resumably.

An audit family (``experiments/configs/audit.py``) is a config whose fields are the keys of
:data:`certunlearn.audit.AUDIT_CONFIG_DEFAULTS` (the certificate, the data and model of the end-to-end
audit, N, alpha, ...) with ``seed`` replaced by ``seeds``, plus ``family``; ``sweep(variant)`` lists the
grid as override dicts. Each grid point becomes one :class:`AuditCell` (a frozen, validated value: the
audit code never sees a ``ConfigDict``). A cell runs ``run_audit(settings, seed=s)`` for each of its
``seeds``: the seeds repeat the whole audit with independent randomness, for the spread over seeds.

The store is the runner's (:mod:`certunlearn.runner`), so :func:`certunlearn.figures.find_results` finds
it by its manifest's ``family``::

    cells/<key>.csv      one finished cell (its rows), written atomically; its presence = done
    cells/<key>.json     the cell's parameters, resolved audit config, status, wall time (error + traceback)
    results.csv          the combined table of the sweep's cells
    manifest.json        family, variant, config, grid, overrides, per-cell status, git commit, package
                         versions, device (:func:`certunlearn.runner.environment`), seeds, wall time

Re-running a sweep skips the cells whose CSV exists; a cell that raises is recorded (``status="error"``)
and tried again on the next run, and the sweep goes on; warnings raised in a cell (e.g. that Guo's
calibration under-noises at epsilon > 1) go to its manifest entry and are issued once per cell.

Columns of the table, one row per (cell, seed, audit kind, sigma scale):

* the cell's settings (tuples as ``"3,8"``, ``classes=None`` as ``"all"``, ``None`` as NaN), ``family``,
  ``cell``, ``status``, ``error``, ``seed``;
* ``kind`` ("calibrator" or "end-to-end"), ``sigma_scale`` (the calibrator's multiplier of the calibrated
  sigma; 1 for end-to-end rows), ``mechanism`` ("certified", "sigma x0.5", ..., or "no removal"),
  ``sound_mechanism`` (True where the audited mechanism is meant to satisfy its certificate: a calibrator
  with ``sigma_scale >= 1``, an end-to-end audit of the Newton removal);
* every column of :meth:`certunlearn.audit.EpsilonAudit.as_dict`: ``epsilon_lb``, ``certified_epsilon``,
  ``flagged`` (``epsilon_lb > certified_epsilon``), ``delta``, ``alpha``, ``num_samples`` (N evaluation
  samples per side), ``num_select``, ``sigma`` (in force), ``seconds``, the test's ``test_fpr``,
  ``test_fnr``, ``test_fpr_upper``, ``test_fnr_upper`` (Clopper-Pearson bounds at ``test_bound_alpha``),
  counts and threshold, and each kind's details. Where a detail shares a setting's name it holds the
  value in force for that row: ``residual_budget`` is the calibrator's budget on calibrator rows and the
  resolved budget on end-to-end rows; ``n_train`` and ``batch_size`` are the sizes used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from certunlearn import audit, runner

__all__ = ["FAMILY", "TIMING_COLUMNS", "AuditCell", "audit_cell_key", "load_config", "run_cell", "sweep"]

FAMILY = "audit"
#: Columns that measure time; everything else is a deterministic function of the cell and seed.
TIMING_COLUMNS = ("seconds", "pipeline_seconds")
_KINDS = ("calibrator", "end_to_end")
_KEY_LENGTH = 16
# Keys whose default is None but whose value is a float (ints are normalised so 1 and 1.0 hash alike).
_FLOAT_OR_NONE = ("sigma", "residual_budget")


def _settings_defaults() -> dict[str, Any]:
    defaults = audit.audit_config_defaults()
    del defaults["seed"]  # a cell's seeds replace it
    return defaults


def _normalise(name: str, value, default):
    """Lists -> tuples, NumPy scalars -> Python; ints where the default (or key) is a float -> float."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, tuple):
        value = tuple(v.item() if isinstance(v, np.generic) else v for v in value)
        if name == "calibrator_sigma_scales":
            value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and (isinstance(default, float) or name in _FLOAT_OR_NONE):
        value = float(value)
    return value


def _seeds(value) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"seeds must be a tuple of non-negative ints, got {value!r}")
    seeds = tuple(value)
    ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds)
    if not seeds or not ok or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty tuple of distinct non-negative ints, got {value!r}")
    return tuple(int(s) for s in seeds)


@dataclasses.dataclass(frozen=True)
class AuditCell:
    """One audit cell: the settings of :func:`certunlearn.audit.run_audit` (without ``seed``) and the seeds.

    Attributes:
      family: the experiment family (a label for the results; "audit").
      seeds: each seed runs the cell's audits once, with ``run_audit(..., seed=s)``.
      settings: ``(key, value)`` pairs, sorted by key, holding every key of
        :data:`certunlearn.audit.AUDIT_CONFIG_DEFAULTS` but ``seed`` (missing keys take the defaults).
    """

    family: str
    seeds: tuple[int, ...]
    settings: tuple[tuple[str, Any], ...]

    @classmethod
    def from_config(cls, config) -> AuditCell:
        """Builds a cell from a ``ConfigDict`` or a mapping; unknown keys are an error.

        >>> cell = AuditCell.from_config({"epsilon": 2, "seeds": [0, 1]})
        >>> cell.seeds, cell.get("epsilon"), cell.get("calibration")
        ((0, 1), 2.0, 'analytic')
        """
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        defaults = _settings_defaults()
        family = values.pop("family", FAMILY)
        if not isinstance(family, str) or not family:
            raise ValueError(f"family must be a non-empty string, got {family!r}")
        if "seed" in values:
            raise ValueError("an audit config lists its seeds in seeds=(...), not seed=; rename the key")
        seeds = _seeds(values.pop("seeds", (0,)))
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ValueError(f"unknown audit config keys {unknown}; known keys: {sorted(defaults) + ['family', 'seeds']}")
        merged = {**defaults, **{k: _normalise(k, v, defaults[k]) for k, v in values.items()}}
        kinds = merged["kinds"]
        if isinstance(kinds, str) or not isinstance(kinds, tuple) or not kinds or not set(kinds) <= set(_KINDS):
            raise ValueError(f"kinds must be a non-empty tuple among {list(_KINDS)}, got {kinds!r}")
        return cls(family=family, seeds=seeds, settings=tuple(sorted(merged.items())))

    def get(self, name: str):
        """The value of setting ``name``."""
        return dict(self.settings)[name]

    def audit_config(self) -> dict[str, Any]:
        """The mapping passed to :func:`certunlearn.audit.run_audit`: the settings that differ from the defaults.

        Passing only those keeps ``run_audit``'s rule that a config setting ``sigma`` (and leaving the
        default residual budget alone) means sigma.
        """
        defaults = _settings_defaults()
        return {k: v for k, v in self.settings if v != defaults[k] or type(v) is not type(defaults[k])}

    def params(self) -> dict[str, Any]:
        """The cell as JSON-compatible values (tuples as lists)."""
        out = {"family": self.family, "seeds": list(self.seeds)}
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.settings})
        return out

    @property
    def key(self) -> str:
        return audit_cell_key(self)

    def columns(self) -> dict[str, Any]:
        """The settings as table columns: one scalar each (``seeds`` is left to the rows)."""
        out = {"family": self.family}
        for name, value in self.settings:
            if name == "classes" and value is None:
                value = "all"
            elif isinstance(value, tuple):
                value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            out[name] = math.nan if value is None else value
        return out


def audit_cell_key(cell: AuditCell) -> str:
    """A stable hash of the cell (SHA-256 of its canonical JSON), 16 hex digits, as :func:`runner.cell_key`.

    >>> audit_cell_key(AuditCell.from_config({"l2_reg": 1e-2})) == audit_cell_key(AuditCell.from_config({"l2_reg": 0.01}))
    True
    >>> audit_cell_key(AuditCell.from_config({"epsilon": 1})) == audit_cell_key(AuditCell.from_config({"epsilon": 1.0}))
    True
    """
    text = json.dumps(cell.params(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_LENGTH]


def load_config(config, *, smoke: bool = False):
    """``(ConfigDict, grid)`` of an audit config: a path (optionally ``":smoke"``), a family name, a module or a
    ``ConfigDict`` (:func:`certunlearn.runner.load_config`)."""
    return runner.load_config(config, smoke=smoke)


# ----------------------------------------------------------------------------------------------------
# One cell.


def _mechanism(kind: str, sigma_scale: float, removal: str) -> tuple[str, bool]:
    """A short name of the audited mechanism and whether it is meant to satisfy its certificate."""
    if kind == "calibrator":
        return ("certified" if sigma_scale == 1.0 else f"sigma x{sigma_scale:g}"), sigma_scale >= 1.0
    if removal == "newton":
        return "certified", True
    return ("no removal" if removal == "none" else f"removal={removal}"), False


def run_cell(cell: AuditCell):
    """Runs every seed of ``cell`` through :func:`certunlearn.audit.run_audit`; returns its rows as a DataFrame.

    Returns:
      One row per (seed, audit kind, sigma scale): the cell's columns first, then the audit's.
    """
    import pandas as pd

    rows = []
    settings = cell.audit_config()
    front = {**cell.columns(), "cell": cell.key, "status": "ok", "error": ""}
    for seed in cell.seeds:
        result = audit.run_audit(settings, seed=seed)
        for row in [*result["calibrator"], *result["end_to_end"]]:
            kind = row["kind"]
            scale = float(row.get("sigma_scale", 1.0))
            mechanism, sound = _mechanism(kind, scale, str(row.get("removal", cell.get("removal"))))
            # A setting the audit reports as well (sigma, residual_budget, n_train, ...) takes the value in force.
            rows.append({**front, "seed": seed, "kind": kind, "sigma_scale": scale, "mechanism": mechanism,
                         "sound_mechanism": sound, **row})
    return pd.DataFrame(rows)


def _error_table(cell: AuditCell, message: str):
    import pandas as pd

    return pd.DataFrame([{**cell.columns(), "cell": cell.key, "status": "error", "error": message,
                          "seed": math.nan, "kind": math.nan}])


# ----------------------------------------------------------------------------------------------------
# The sweep.


def sweep(config, *, out, smoke: bool = False, overrides: Sequence[str] | Mapping = (), progress: bool = True):
    """Runs every cell of an audit config's grid into ``out`` and returns the combined table.

    Each grid entry is applied to the config, then ``overrides`` (so ``--set`` wins over the grid; grid
    points that become identical run once). Finished cells (``out/cells/<key>.csv``) are skipped, failed
    ones are recorded and retried on the next run; ``results.csv`` and ``manifest.json`` are rewritten
    atomically after every cell and at the end (also on interruption, which is then re-raised).

    Args:
      config: an audit config: a path to ``experiments/configs/audit.py`` (optionally with ``":smoke"``),
        a family name ("audit"), a module with ``get_config``/``sweep``, or a ``ConfigDict``.
      out: the results folder (created if needed).
      smoke: the config's CPU-sized "smoke" variant.
      overrides: ``"key=value"`` strings or a mapping applied to every cell.
      progress: show a tqdm progress bar over cells.

    Returns:
      The combined table (a pandas DataFrame), as stored in ``out/results.csv`` (module docstring).

    Raises:
      ValueError: an unknown config key, an override of the wrong type, or settings no cell can take
        (bad ``seeds`` or ``kinds``); nothing is written then.
    """
    base, grid = load_config(config, smoke=smoke)
    cells: dict[str, AuditCell] = {}
    try:
        base = runner.apply_overrides(base, overrides)
        for entry in grid:
            cell = AuditCell.from_config(runner.apply_overrides(runner.apply_overrides(base, entry), overrides))
            cells.setdefault(cell.key, cell)
    except TypeError as err:  # ConfigDict's type lock, e.g. --set kinds=calibrator for a tuple
        raise ValueError(f"{err}; write tuples as Python literals, e.g. kinds='(\"calibrator\",)'") from err

    manifest = {
        "family": str(base.get("family", FAMILY)),
        "variant": "smoke" if smoke or str(config).endswith(":smoke") else "full",
        "config": base.to_dict(),
        "overrides": list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides),
        "sweep": grid,
    }
    return runner.run_cells(cells, out=out, manifest=manifest, run_cell=run_cell, error_table=_error_table,
                            summarize=_summarize, progress=progress)


def _summarize(table) -> dict[str, Any]:
    return {"flagged": int(table["flagged"].astype(bool).sum()), "max_eps_lb": round(float(table["epsilon_lb"].max()), 4)}
