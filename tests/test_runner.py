"""Tests of the experiment runner: configs, cells, the resumable results store and every family's smoke run."""

import json
import math
import os
import re
import textwrap
import types
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import certunlearn as cu
from certunlearn import runner

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
FAMILIES = ("accuracy", "budget", "bounds", "timing", "multiclass")

# The bounds family runs guo's calibration at epsilon = 1e6 on purpose (it measures bounds, not
# certificates), and the library rightly warns that guo's formula under-noises there.
pytestmark = pytest.mark.filterwarnings("ignore:cell .*under-noises:RuntimeWarning")

# A three-cell sweep on digits 3 vs 8, small enough to run several times per test session. The tests
# use the shapes of the smoke configs (all 285 rows), so the compiled code is shared.
TINY_CONFIG = """
from certunlearn.runner import default_config

def get_config(variant="full"):
    return default_config(family="tiny", dataset="digits", classes=(3, 8), l2_reg=1e-2, sigma=0.1,
                          num_removals=3, checkpoint_every=2, seeds=(0, 1))

def sweep(variant="full"):
    return [{"l2_reg": v} for v in (1e-2, 3e-2, 1e-1)]
"""


def smoke_results(tmp_path_factory) -> Path:
    """Every family's smoke sweep under one session folder; a later call resumes, so it costs little."""
    root = tmp_path_factory.getbasetemp() / "smoke-results"
    for family in FAMILIES:
        runner.sweep(CONFIGS / f"{family}.py", out=root / family, smoke=True, progress=False)
    return root


@pytest.fixture()
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.py"
    path.write_text(TINY_CONFIG)
    return path


def _numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its timing columns (the only ones that may differ between runs)."""
    return table.drop(columns=[c for c in runner.TIMING_COLUMNS if c in table]).reset_index(drop=True)


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


# ----------------------------------------------------------------------------------------------------
# Every family's smoke config, end to end.


@pytest.mark.parametrize("family", FAMILIES)
def test_smoke_family_runs_end_to_end(family, tmp_path_factory):
    root = smoke_results(tmp_path_factory)
    table = runner.load_results(root / family)
    config, grid = runner.load_config(CONFIGS / f"{family}.py", smoke=True)
    cells = {runner.CellConfig.from_config(runner.apply_overrides(config, g)) for g in grid}

    assert (table["status"] == "ok").all(), table.loc[table["status"] != "ok", "error"].tolist()
    assert set(table["family"]) == {family}
    assert table["cell"].nunique() == len(cells) == len(grid)
    assert not table.duplicated(["cell", "seed", "step"]).any()
    for cell in cells:
        rows = table[table["cell"] == cell.key]
        assert set(rows["seed"]) == set(cell.seeds)
        steps = math.ceil(cell.num_removals / cell.removal_batch)
        for _, seed_rows in rows.groupby("seed"):
            assert seed_rows["step"].tolist() == list(range(steps + 1))
            assert seed_rows["num_removed"].iloc[-1] == cell.num_removals
    # The certificate's soundness, seen in the results: the spent residual bounds the exact residual and
    # stays within the budget, so the certified epsilon never exceeds the target.
    assert (table["exact_residual"] <= table["residual_spent"] * (1 + 1e-9) + 1e-12).all()
    assert (table["residual_spent"] <= table["residual_budget"]).all()
    assert (table["certified_epsilon"] <= table["epsilon"] * (1 + 1e-6)).all()
    checkpoints = table[np.isfinite(table["test_accuracy_retrained"])]
    assert (checkpoints["distance_to_retrained"] >= 0).all() and len(checkpoints) >= 2 * table["cell"].nunique()
    manifest = json.loads((root / family / "manifest.json").read_text())
    assert manifest["family"] == family and manifest["variant"] == "smoke" and manifest["complete"]


# ----------------------------------------------------------------------------------------------------
# The store: resume, failures, determinism, manifest, atomic writes.


def test_resume_after_interruption_gives_the_uninterrupted_table(tiny_config, tmp_path, monkeypatch):
    real_run_cell, calls = runner.run_cell, []

    def interrupted_at_second_cell(cell):
        calls.append(cell.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_cell(cell)

    monkeypatch.setattr(runner, "run_cell", interrupted_at_second_cell)
    with pytest.raises(KeyboardInterrupt):
        runner.sweep(tiny_config, out=tmp_path / "resumed", progress=False)
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert not manifest["complete"]
    assert sorted(i["status"] for i in manifest["cells"].values()) == ["interrupted", "ok", "pending"]
    assert len(list((tmp_path / "resumed" / "cells").glob("*.csv"))) == 1
    assert _temp_files(tmp_path / "resumed") == []

    calls.clear()
    monkeypatch.setattr(runner, "run_cell", lambda cell: calls.append(cell.key) or real_run_cell(cell))
    resumed = runner.sweep(tiny_config, out=tmp_path / "resumed", progress=False)
    assert len(calls) == 2  # the finished cell was skipped
    uninterrupted = runner.sweep(tiny_config, out=tmp_path / "uninterrupted", progress=False)
    pd.testing.assert_frame_equal(_numbers(resumed), _numbers(uninterrupted), check_exact=True)
    assert json.loads((tmp_path / "resumed" / "manifest.json").read_text())["complete"]


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    config = runner.default_config(family="failing", dataset="digits", classes=(3, 8), l2_reg=1e-2,
                                   sigma=0.1, num_removals=2)
    path = tmp_path / "failing.py"
    path.write_text(textwrap.dedent(f"""
        from certunlearn.runner import default_config
        def get_config(variant="full"):
            return default_config(**{config.to_dict()!r})
        def sweep(variant="full"):
            return [{{"removal_order": "random"}},
                    {{"removal_order": "class", "target_class": 5}},  # 5 is not one of classes=(3, 8)
                    {{"removal_order": "class", "target_class": 8}}]
    """))
    table = runner.sweep(path, out=tmp_path / "out", progress=False)
    failed = table[table["status"] == "error"]
    assert len(failed) == 1 and "target_class" in failed["error"].iloc[0]
    assert (table.loc[table["status"] == "ok", "cell"].nunique()) == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (key,) = manifest["failed"]
    assert manifest["cells"][key]["status"] == "error"
    assert "Traceback" in manifest["cells"][key]["traceback"] and "ValueError" in manifest["cells"][key]["error"]
    assert json.loads((tmp_path / "out" / "cells" / f"{key}.json").read_text())["status"] == "error"

    calls = []
    real_run_cell = runner.run_cell
    monkeypatch.setattr(runner, "run_cell", lambda cell: calls.append(cell.key) or real_run_cell(cell))
    runner.sweep(path, out=tmp_path / "out", progress=False)
    assert calls == [key]  # only the failed cell is tried again


# The exact-Newton solvers. (solver="cached" decides when to refactorise from measured wall times, so
# its steps, though always certified, are not reproducible bit for bit.)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_same_config_and_seed_give_identical_numbers(solver, tmp_path):
    config = runner.default_config(family="twice", dataset="digits", classes=(3, 8), l2_reg=1e-2, sigma=0.1,
                                   num_removals=4, removal_batch=2, removal_order="influence",
                                   checkpoint_every=1, seeds=(3,), solver=solver)
    first = runner.run(config, out=tmp_path / "a", progress=False)
    second = runner.run(config, out=tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(_numbers(first), _numbers(second), check_exact=True)
    assert np.isfinite(first["distance_to_retrained"]).all()


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_vmapped_seeds_give_the_numbers_of_one_seed_at_a_time(solver, tmp_path):
    config = runner.default_config(family="vmap", dataset="digits", classes=(3, 8), l2_reg=1e-2, sigma=0.1,
                                   num_removals=4, removal_batch=2, checkpoint_every=1, seeds=(3, 4, 5),
                                   solver=solver)
    batched = _numbers(runner.run(config, out=tmp_path / "a", progress=False))
    config.vmap_seeds = False
    looped = _numbers(runner.run(config, out=tmp_path / "b", progress=False))
    assert len(batched) == len(looped) == 3 * 3 and np.isfinite(batched["distance_to_retrained"]).all()
    batched, looped = batched.drop(columns=["cell", "vmap_seeds"]), looped.drop(columns=["cell", "vmap_seeds"])
    pd.testing.assert_frame_equal(batched, looped, check_exact=False, rtol=1e-6, atol=1e-9)


def test_manifest_records_config_environment_and_cells(tiny_config, tmp_path):
    runner.sweep(tiny_config, out=tmp_path, overrides=["num_removals=2"], progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["family"] == "tiny" and manifest["variant"] == "full" and manifest["complete"]
    assert manifest["config"]["num_removals"] == 2 and manifest["overrides"] == ["num_removals=2"]
    assert manifest["sweep"] == [{"l2_reg": 1e-2}, {"l2_reg": 3e-2}, {"l2_reg": 1e-1}]
    assert manifest["seeds"] == [0, 1]
    assert manifest["git"]["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", manifest["git"]["commit"])
    for package in ("jax", "optax", "numpy", "certunlearn", "dp-accounting"):
        assert manifest["versions"][package], package
    assert manifest["device"]["devices"] == [str(d) for d in jax.devices()]
    assert manifest["device"]["x64"] is True
    assert len(manifest["cells"]) == 3
    for key, info in manifest["cells"].items():
        assert info["status"] == "ok" and info["seconds"] > 0
        assert runner.cell_key(runner.CellConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in info["params"].items()})) == key
    table = pd.read_csv(tmp_path / "results.csv")
    assert set(table["cell"]) == set(manifest["cells"]) and (table["num_removals"] == 2).all()


def test_writes_are_atomic_and_leave_no_temporary_files(tiny_config, tmp_path, monkeypatch):
    runner.sweep(tiny_config, out=tmp_path / "out", progress=False)
    assert _temp_files(tmp_path / "out") == []

    target = tmp_path / "file.txt"
    runner.atomic_write_text(target, "old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        runner.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "out", "tiny.py"]


# ----------------------------------------------------------------------------------------------------
# Configs and cells.


def test_every_family_config_converts_to_valid_cells():
    for family in FAMILIES:
        for smoke in (False, True):
            config, grid = runner.load_config(CONFIGS / f"{family}.py", smoke=smoke)
            assert config.family == family and grid
            keys = {runner.CellConfig.from_config(runner.apply_overrides(config, g)).key for g in grid}
            assert len(keys) == len(grid), family  # no two grid points are the same cell


def test_config_spellings_resolve_to_the_same_config():
    by_path, _ = runner.load_config(str(CONFIGS / "budget.py"), smoke=True)
    by_suffix, _ = runner.load_config(f"{CONFIGS / 'budget.py'}:smoke")
    assert by_path.to_dict() == by_suffix.to_dict()
    by_name, _ = runner.load_config("budget", smoke=True)
    assert by_name.to_dict() == by_path.to_dict()
    with pytest.raises(FileNotFoundError, match="no config named"):
        runner.load_config("no-such-family")


def test_run_records_the_smoke_variant_of_a_suffixed_path(tmp_path):
    table = runner.run(f"{CONFIGS / 'bounds.py'}:smoke", overrides=["seeds=(0,)", "num_removals=2"],
                       out=tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["variant"] == "smoke" and manifest["family"] == "bounds"
    assert table["cell"].nunique() == 1 and set(table["dataset"]) == {"digits"}


def test_overrides_are_parsed_checked_and_win_over_the_grid(tiny_config, tmp_path):
    assert runner.parse_override("classes=(2, 4)") == ("classes", (2, 4))
    assert runner.parse_override("seeds=[0, 1]") == ("seeds", (0, 1))
    assert runner.parse_override("removal_order=influence") == ("removal_order", "influence")
    with pytest.raises(ValueError, match="key=value"):
        runner.parse_override("l2_reg")
    config, _ = runner.load_config(tiny_config)
    with pytest.raises(ValueError, match="unknown config key 'l2reg'"):
        runner.apply_overrides(config, ["l2reg=1"])
    table = runner.sweep(tiny_config, out=tmp_path, overrides={"l2_reg": 0.05, "seeds": (0,)}, progress=False)
    assert table["cell"].nunique() == 1 and set(table["l2_reg"]) == {0.05}  # three grid points, one cell


def test_cell_config_validates_at_the_boundary():
    with pytest.raises(ValueError, match="sigma or residual_budget, not both"):
        runner.CellConfig(sigma=1.0, residual_budget=0.1)
    with pytest.raises(ValueError, match="removal_order must be one of"):
        runner.CellConfig(removal_order="newest")
    with pytest.raises(ValueError, match="target_class"):
        runner.CellConfig(removal_order="class")
    with pytest.raises(ValueError, match="l2_reg must be a finite number > 0, got -1"):
        runner.CellConfig(l2_reg=-1)
    with pytest.raises(ValueError, match="unknown config keys"):
        runner.CellConfig.from_config({"l2_reg": 1e-3, "lam": 1e-3})
    cell = runner.CellConfig(seeds=[2, 0], classes=[2, 4], num_removals=3.0)
    assert cell.seeds == (2, 0) and cell.classes == (2, 4) and cell.num_removals == 3
    with pytest.raises(dataclasses_frozen_error()):
        cell.l2_reg = 1.0


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_cell_key_is_stable_across_sessions():
    # Changing the key would orphan every stored cell; change this value only on purpose (it changed when
    # vmap_seeds and cg_error_ratio were added: cg cells now stop CG earlier, so old cells are not reused).
    assert runner.cell_key(runner.CellConfig()) == "a3c5ac35bffcbf27"
    assert runner.cell_key(runner.CellConfig(l2_reg=1e-3)) == runner.cell_key(runner.CellConfig(l2_reg=0.001))


# ----------------------------------------------------------------------------------------------------
# Removal orders and the retrained reference.


def _digits_model(**changes):
    cell = runner.CellConfig(dataset="digits", classes=(3, 8), l2_reg=1e-2, sigma=0.1, num_removals=30,
                             **changes)
    dataset = runner._load_dataset(cell)
    model = cu.fit(dataset.X_train, dataset.y_train, key=jax.random.key(0),
                   **runner._fit_kwargs(cell, dataset.num_classes))
    return cell, dataset, model


def test_class_order_removes_the_target_class_first():
    cell, dataset, model = _digits_model(removal_order="class", target_class=8)
    order = runner.removal_order(cell, 0, dataset, model)
    assert len(order) == 30 and len(set(order.tolist())) == 30
    assert (np.asarray(dataset.y_train)[order] == -1.0).all()  # class 8 is the second class: label -1


def test_influence_order_is_by_descending_gradient_norm():
    cell, dataset, model = _digits_model(removal_order="influence")
    order = runner.removal_order(cell, 0, dataset, model)
    # Independent NumPy reference: for the logistic loss, ||grad l_i|| = sigmoid(-y_i z_i) ||x_i||.
    X, y = np.asarray(dataset.X_train), np.asarray(dataset.y_train)
    z = X @ np.asarray(model.params)
    norms = np.linalg.norm(X, axis=1) / (1.0 + np.exp(y * z))
    np.testing.assert_allclose(np.sort(norms)[::-1][:30], norms[order], rtol=1e-12)


def test_random_order_depends_on_the_seed_only():
    cell, dataset, model = _digits_model()
    a, b, c = (runner.removal_order(cell, s, dataset, model) for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_reference_fit_equals_a_fit_on_the_retained_rows():
    cell, dataset, model = _digits_model()
    key = jax.random.key(0)
    model, _ = cu.remove(model, [0, 5, 9])
    reference, _ = runner._reference_fit(cell, dataset, model, key, runner._fit_kwargs(cell, 2))
    keep = np.asarray(model.retained)
    sliced = cu.fit(dataset.X_train[keep], dataset.y_train[keep], key=key,
                    **runner._fit_kwargs(cell, dataset.num_classes))
    np.testing.assert_allclose(np.asarray(reference.params), np.asarray(sliced.params), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------------
# Task families (certunlearn.families): settings -> run_seed(settings, seed) -> rows.

def toy_run_seed(settings, seed):
    """A task for the tests: rows from a seeded NumPy draw; raises when asked to."""
    if settings["fail"]:
        raise RuntimeError("toy cell failed on purpose")
    rng = np.random.default_rng(seed)
    return [{"step": i, "value": settings["scale"] * float(rng.normal()), "run_seconds": 0.0} for i in range(3)]


def _toy_config():
    import ml_collections

    return ml_collections.ConfigDict(
        {"family": "toy", "task": "test_runner:toy_run_seed", "seeds": (0, 1), "scale": 1.0, "fail": False,
         "classes": (3, 8), "note": None})


def test_task_family_sweep_resumes_and_records_failures(tmp_path, monkeypatch):
    module = types.ModuleType("toy_config")
    module.get_config = lambda variant="full": _toy_config()
    module.sweep = lambda variant="full": [{"scale": 1.0}, {"scale": 2.0}, {"scale": 3.0, "fail": True}]
    table = runner.sweep(module, out=tmp_path, progress=False)
    ok = table[table["status"] == "ok"]
    assert len(ok) == 2 * 2 * 3 and set(ok["scale"]) == {1.0, 2.0}
    bad = table[table["status"] == "error"]
    assert len(bad) == 1 and "toy cell failed on purpose" in bad["error"].iloc[0]
    for seed in (0, 1):  # values equal an independent draw
        expect = 2.0 * np.random.default_rng(seed).normal(size=3)
        got = ok[(ok["scale"] == 2.0) & (ok["seed"] == seed)].sort_values("step")["value"]
        np.testing.assert_allclose(got, expect, rtol=1e-12)
    assert set(ok["classes"]) == {"3,8"} and ok["note"].isna().all() and set(ok["family"]) == {"toy"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["family"] == "toy" and len(manifest["failed"]) == 1 and manifest["seeds"] == [0, 1]
    # A second run redoes only the failed cell.
    again = runner.sweep(module, out=tmp_path, progress=False)
    cells = json.loads((tmp_path / "manifest.json").read_text())["cells"]
    assert sorted(bool(c.get("skipped")) for c in cells.values()) == [False, True, True]
    assert [c["status"] for c in cells.values() if not c.get("skipped")] == ["error"]
    pd.testing.assert_frame_equal(again[again["status"] == "ok"].reset_index(drop=True), ok.reset_index(drop=True))


def test_task_cell_validation():
    with pytest.raises(ValueError, match="task must look like"):
        runner.TaskCell.from_config({"task": "no_colon", "seeds": (0,)})
    with pytest.raises(ValueError, match="seeds must be"):
        runner.TaskCell.from_config({"task": "m:f", "seeds": (1, 1)})
    with pytest.raises(ValueError, match="x must be finite"):
        runner.TaskCell.from_config({"task": "m:f", "x": float("nan")})
    a = runner.TaskCell.from_config({"task": "m:f", "b": 1, "a": (1, 2)})
    b = runner.TaskCell.from_config({"a": [1, 2], "task": "m:f", "b": 1})
    assert a.key == b.key and a.key != runner.TaskCell.from_config({"task": "m:f", "b": 2, "a": (1, 2)}).key
    with pytest.raises(ValueError, match="has no 'nope'"):
        runner.TaskCell.from_config({"task": "certunlearn.runner:nope"}).function()
