"""Audit sweeps: the audit family's smoke run, its table and store, resume, failures, and its figure.

The smoke sweep (digits 3 vs 8, 100 end-to-end seeds, two repetitions, two cells) runs once per session;
the other tests reuse its compiled code and results.
"""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from certunlearn import audit, audit_sweep, figures, runner

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "configs" / "audit.py"
FIGURE_SCRIPT = REPO / "paper_figures" / "fig_audit.py"

# Guo's calibration under-noises at epsilon > 1 (the library warns); the smoke grid stays at epsilon = 1.
pytestmark = pytest.mark.filterwarnings("ignore:cell .*under-noises:RuntimeWarning")

EXPECTED_COLUMNS = {
    "family", "cell", "status", "error", "seed", "kind", "sigma_scale", "mechanism", "sound_mechanism",
    "epsilon", "calibration", "l2_reg", "dataset", "classes", "num_seeds", "calibrator_num_samples",
    "certified_epsilon", "epsilon_lb", "flagged", "delta", "alpha", "num_samples", "num_select", "sigma",
    "residual_budget", "seconds", "test_fpr", "test_fnr", "test_fpr_upper", "test_fnr_upper", "test_bound_alpha",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(results folder, table) of the audit family's smoke sweep."""
    out = tmp_path_factory.mktemp("audit-smoke") / "audit"
    table = audit_sweep.sweep(CONFIG, out=out, smoke=True, progress=False)
    return out, table


def _numbers(table):
    return table.drop(columns=[c for c in audit_sweep.TIMING_COLUMNS if c in table]).reset_index(drop=True)


def _load(path):
    spec = importlib.util.spec_from_file_location(f"audit_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(smoke=True):
    config, grid = audit_sweep.load_config(CONFIG, smoke=smoke)
    return [audit_sweep.AuditCell.from_config(runner.apply_overrides(config, g)) for g in grid]


# ----------------------------------------------------------------------------------------------------
# The config.


def test_configs_cover_the_grid_and_hold_every_audit_key():
    keys = set(audit.audit_config_defaults()) - {"seed"} | {"family", "seeds"}
    module = _load(CONFIG)
    assert module.get_config("default").to_dict() == module.get_config().to_dict()
    with pytest.raises(ValueError, match="variant"):
        module.get_config("huge")
    for smoke in (False, True):
        config, _ = audit_sweep.load_config(CONFIG, smoke=smoke)
        assert set(config.keys()) == keys
        assert config.family == "audit" and config.dataset == "digits" and tuple(config.classes) == (3, 8)
    full, grid = runner.load_config(CONFIG)
    assert full.num_seeds == 1000 and len(full.seeds) >= 3
    certified = {(g["epsilon"], g["calibration"]) for g in grid if g.get("removal", "newton") == "newton"}
    assert certified == {(e, c) for e in (0.25, 0.5, 1.0, 2.0, 4.0) for c in ("guo", "analytic")}
    assert {g["epsilon"] for g in grid if g.get("removal") == "none"} == {0.25, 0.5, 1.0, 2.0, 4.0}
    assert len({c.key for c in _cells(smoke=False)}) == len(grid)
    smoke_config, smoke_grid = runner.load_config(CONFIG, smoke=True)
    assert smoke_config.num_seeds == 100 and len(smoke_grid) == 2


def test_cells_validate_keys_and_hash_stably():
    cell = audit_sweep.AuditCell.from_config({"epsilon": 2, "l2_reg": 3e-2, "seeds": [0, 1]})
    assert cell.key == audit_sweep.AuditCell.from_config({"epsilon": 2.0, "l2_reg": 0.03, "seeds": (0, 1)}).key
    assert cell.key != audit_sweep.AuditCell.from_config({"epsilon": 4.0, "l2_reg": 3e-2, "seeds": (0, 1)}).key
    assert cell.key != audit_sweep.AuditCell.from_config({"epsilon": 2.0, "l2_reg": 3e-2, "seeds": (0,)}).key
    assert re.fullmatch(r"[0-9a-f]{16}", cell.key)
    assert cell.audit_config() == {"epsilon": 2.0, "l2_reg": 3e-2}  # only what differs from the defaults
    # A config that sets sigma (and leaves the default budget) means sigma, as run_audit reads it.
    assert audit_sweep.AuditCell.from_config({"sigma": 1}).audit_config() == {"sigma": 1.0}
    with pytest.raises(ValueError, match="unknown audit config keys"):
        audit_sweep.AuditCell.from_config({"epsilom": 1.0})
    with pytest.raises(ValueError, match="seeds="):
        audit_sweep.AuditCell.from_config({"seed": 3})
    with pytest.raises(ValueError, match="seeds must be"):
        audit_sweep.AuditCell.from_config({"seeds": (0, 0)})
    with pytest.raises(ValueError, match="kinds must be"):
        audit_sweep.AuditCell.from_config({"kinds": ("membership",)})
    with pytest.raises(ValueError, match="unknown config key"):
        audit_sweep.sweep(CONFIG, out="/nonexistent/never-written", smoke=True, overrides=["epsilom=1"])
    with pytest.raises(ValueError, match="Python literals"):
        audit_sweep.sweep(CONFIG, out="/nonexistent/never-written", smoke=True, overrides=["kinds=calibrator"])


# ----------------------------------------------------------------------------------------------------
# The smoke sweep, end to end.


def test_smoke_sweep_runs_end_to_end_into_the_store(smoke):
    out, table = smoke
    assert (table["status"] == "ok").all(), table["error"].tolist()
    assert EXPECTED_COLUMNS <= set(table.columns), EXPECTED_COLUMNS - set(table.columns)
    cells = _cells()
    assert set(table["cell"]) == {c.key for c in cells}
    for cell in cells:
        rows = table[table["cell"] == cell.key]
        per_seed = (len(cell.get("calibrator_sigma_scales")) if "calibrator" in cell.get("kinds") else 0) + (
            1 if "end_to_end" in cell.get("kinds") else 0)
        assert len(rows) == per_seed * len(cell.seeds)
        assert set(rows["seed"]) == set(cell.seeds)
        assert (out / "cells" / f"{cell.key}.csv").exists() and (out / "cells" / f"{cell.key}.json").exists()
    assert not table.duplicated(["cell", "seed", "kind", "sigma_scale"]).any()
    e2e = table[table["kind"] == "end-to-end"]
    assert (e2e["num_samples"] == 50).all() and (e2e["num_select"] == 50).all()  # N = 100: half select
    assert (table.loc[table["kind"] == "calibrator", "num_samples"] == 1000).all()
    assert (table["test_fpr"] <= table["test_fpr_upper"]).all() and (table["test_fnr"] <= table["test_fnr_upper"]).all()
    assert (table["flagged"] == (table["epsilon_lb"] > table["certified_epsilon"])).all()
    pd.testing.assert_frame_equal(table, runner.load_results(out))

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["family"] == "audit" and manifest["variant"] == "smoke" and manifest["complete"]
    assert manifest["seeds"] == [0, 1] and manifest["failed"] == [] and len(manifest["cells"]) == 2
    assert manifest["git"]["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", manifest["git"]["commit"])
    assert manifest["versions"]["jax"] and manifest["device"]["devices"] == [str(d) for d in jax.devices()]
    assert figures.find_results(out.parent, "audit") == out  # the figures find the family by its manifest
    assert [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"] == []


def test_audited_epsilon_never_exceeds_the_certified_one_for_sound_mechanisms(smoke):
    _, table = smoke
    sound = table[table["sound_mechanism"]]
    assert set(sound["kind"]) == {"calibrator", "end-to-end"}
    assert (sound["epsilon_lb"] <= sound["certified_epsilon"]).all()
    assert not sound["flagged"].any()
    assert (sound["epsilon_lb"] >= 0).all() and np.isfinite(sound["epsilon_lb"]).all()
    # The deliberately broken mechanisms are there too; publishing the unchanged model is flagged.
    broken = table[~table["sound_mechanism"]]
    assert set(broken["mechanism"]) == {"sigma x0.5", "no removal"}
    assert broken.loc[broken["mechanism"] == "no removal", "flagged"].all()


# ----------------------------------------------------------------------------------------------------
# Resume and failures.


def test_resume_skips_finished_cells_and_gives_the_same_table(smoke, tmp_path, monkeypatch):
    out, table = smoke
    resumed = tmp_path / "audit"
    shutil.copytree(out, resumed)
    calls = []
    real = audit.run_audit
    monkeypatch.setattr(audit, "run_audit", lambda *a, **k: calls.append(k.get("seed")) or real(*a, **k))

    again = audit_sweep.sweep(CONFIG, out=resumed, smoke=True, progress=False)
    assert calls == []  # every cell finished: nothing runs
    pd.testing.assert_frame_equal(again, table)

    redo = _cells()[1]
    (resumed / "cells" / f"{redo.key}.csv").unlink()
    again = audit_sweep.sweep(CONFIG, out=resumed, smoke=True, progress=False)
    assert calls == list(redo.seeds)  # only the missing cell, once per seed
    pd.testing.assert_frame_equal(_numbers(again), _numbers(table), check_exact=True)
    assert json.loads((resumed / "manifest.json").read_text())["complete"]


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = audit.run_audit

    def fails_without_removal(config, **overrides):
        if config.get("removal") == "none":
            raise ValueError("deliberate failure")
        return real(config, **overrides)

    monkeypatch.setattr(audit, "run_audit", fails_without_removal)
    # Calibrator audits only (cheap): the overrides win over the grid's kinds.
    overrides = {"kinds": ("calibrator",), "seeds": (0,)}
    table = audit_sweep.sweep(CONFIG, out=tmp_path, smoke=True, overrides=overrides, progress=False)
    failed = table[table["status"] == "error"]
    assert len(failed) == 1 and failed["error"].iloc[0] == "ValueError: deliberate failure"
    assert failed["removal"].iloc[0] == "none"
    ok = table[table["status"] == "ok"]
    assert ok["cell"].nunique() == 1 and len(ok) == 2 and set(ok["kind"]) == {"calibrator"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (key,) = manifest["failed"]
    assert manifest["complete"] and manifest["cells"][key]["status"] == "error"
    assert "Traceback" in manifest["cells"][key]["traceback"]
    assert json.loads((tmp_path / "cells" / f"{key}.json").read_text())["status"] == "error"
    assert not (tmp_path / "cells" / f"{key}.csv").exists()

    monkeypatch.setattr(audit, "run_audit", real)  # the failed cell is tried again on the next run
    table = audit_sweep.sweep(CONFIG, out=tmp_path, smoke=True, overrides=overrides, progress=False)
    assert (table["status"] == "ok").all() and table["cell"].nunique() == 2
    assert json.loads((tmp_path / "manifest.json").read_text())["failed"] == []


# ----------------------------------------------------------------------------------------------------
# The figure.


def test_figure_script_writes_png_and_pdf_from_stored_results(smoke, tmp_path, monkeypatch):
    out, _ = smoke
    module = _load(FIGURE_SCRIPT)
    monkeypatch.setattr(audit, "run_audit", lambda *a, **k: pytest.fail("a figure must not run audits"))
    paths = module.main(out.parent, tmp_path / "figures")
    assert [p.name for p in paths] == ["audit.png", "audit.pdf"]
    for path in paths:
        assert path.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    from certunlearn.families import audit as audit_family

    stats, series = audit_family.audit_stats(figures.load_results(out))
    assert (stats["n_seeds"] == 2).all() and series[:3] == ["kind", "mechanism", "calibration"]
