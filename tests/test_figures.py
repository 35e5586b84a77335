"""Tests of the figures: statistics over seeds, the budget read-off, and every figure script on smoke results."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import certunlearn as cu
from certunlearn import figures, runner

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
SCRIPTS = REPO / "paper_figures"
FAMILIES = ("accuracy", "budget", "bounds", "timing", "multiclass")

# The bounds family runs guo's calibration at epsilon = 1e6 on purpose (it measures bounds, not
# certificates), and the library rightly warns that guo's formula under-noises there.
pytestmark = pytest.mark.filterwarnings("ignore:cell .*under-noises:RuntimeWarning")
PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"


def smoke_results(tmp_path_factory) -> Path:
    """Every family's smoke sweep under one session folder; a later call resumes, so it costs little.

    (The same folder as tests/test_runner.py: whichever module runs first computes it.)
    """
    root = tmp_path_factory.getbasetemp() / "smoke-results"
    for family in FAMILIES:
        runner.sweep(CONFIGS / f"{family}.py", out=root / family, smoke=True, progress=False)
    return root


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    """Module-scoped, so it is computed before ``no_training`` forbids training."""
    return smoke_results(tmp_path_factory)


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def no_training(monkeypatch):
    """Figures only read results: any call that would train or remove fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a figure tried to train a model")

    for name in ("fit", "remove"):
        monkeypatch.setattr(cu, name, forbidden)
        monkeypatch.setattr(cu.api, name, forbidden)
    monkeypatch.setattr(runner, "run_cell", forbidden)


def _check_files(paths, names):
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in names for ext in ("png", "pdf"))
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000, path
        assert data.startswith(PNG_MAGIC if path.suffix == ".png" else PDF_MAGIC), path


# ----------------------------------------------------------------------------------------------------
# Every figure script, and make_all, on smoke results.


def test_every_figure_script_writes_png_and_pdf_from_smoke_results(smoke_root, tmp_path, no_training):
    root = smoke_root
    make_all = _load_script(SCRIPTS / "make_all.py")
    assert {f"fig_{name}" for name in figures.FIGURES} <= {p.stem for p in make_all.scripts()}
    with warnings.catch_warnings():  # scripts of families without smoke results here are skipped
        warnings.simplefilter("ignore")
        paths = make_all.main(root, tmp_path / "figures")  # runs every fig_*.py script's main()
    _check_files([p for p in paths if p.stem in figures.FIGURES], list(figures.FIGURES))


def test_library_make_all_matches_the_scripts(smoke_root, tmp_path, no_training):
    root = smoke_root
    paths = figures.make_all(root, tmp_path)
    _check_files(paths, list(figures.FIGURES))
    # The PDF carries no date, so rebuilding from the same results gives the same bytes.
    again = figures.make_figure("accuracy", root, tmp_path / "again")
    assert again[1].read_bytes() == (tmp_path / "accuracy.pdf").read_bytes()


def test_one_family_folder_and_missing_families(smoke_root, tmp_path):
    root = smoke_root
    script = _load_script(SCRIPTS / "fig_bounds.py")
    _check_files(script.main(root / "bounds", tmp_path / "one"), ["bounds"])  # a family folder directly
    assert figures.find_results(root.parent, "bounds") == root / "bounds"  # found below the given folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = figures.make_all(root / "bounds", tmp_path / "partial")
        with pytest.raises(FileNotFoundError, match="no results"):
            figures.make_all(tmp_path / "empty", tmp_path / "none")
    _check_files(paths, ["bounds"])
    skipped = [str(w.message) for w in caught if "no results for family" in str(w.message)]
    n = len(figures.registry())
    assert "audit" in figures.registry()
    assert len(skipped) == (n - 1) + n  # every other family, then all of them


# ----------------------------------------------------------------------------------------------------
# Statistics.


def test_seed_stats_against_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 7))
    table = pd.DataFrame([{"x": x, "seed": s, "v": values[x, s]} for x in range(4) for s in range(7)])
    stats = figures.seed_stats(table, ["x"], "v")
    np.testing.assert_allclose(stats["center"], np.median(values, axis=1))
    np.testing.assert_allclose(stats["low"], np.percentile(values, 25, axis=1))
    np.testing.assert_allclose(stats["high"], np.percentile(values, 75, axis=1))
    assert (stats["n_seeds"] == 7).all()
    sem = figures.seed_stats(table, ["x"], "v", method="mean_sem")
    np.testing.assert_allclose(sem["high"] - sem["center"], values.std(axis=1, ddof=1) / np.sqrt(7))
    boot = [figures.seed_stats(table, ["x"], "v", method="bootstrap", seed=s) for s in (1, 1, 2)]
    pd.testing.assert_frame_equal(boot[0], boot[1])
    assert not np.allclose(boot[0]["low"], boot[2]["low"])
    assert (boot[0]["low"] <= boot[0]["center"]).all() and (boot[0]["center"] <= boot[0]["high"]).all()
    with pytest.raises(ValueError, match="one row per"):
        figures.seed_stats(pd.concat([table, table]), ["x"], "v")
    assert figures.spread_label("median_iqr", [3, 3]) == "median and IQR over 3 seeds"


def test_failed_cells_are_left_out_with_a_warning(tmp_path):
    table = pd.DataFrame({"cell": ["a", "b"], "status": ["ok", "error"], "error": ["", "ValueError: x"]})
    table.to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "manifest.json").write_text('{"family": "demo"}')
    with pytest.warns(UserWarning, match="1 failed cell"):
        loaded = figures.load_results(tmp_path, "demo")
    assert loaded["cell"].tolist() == ["a"]


# ----------------------------------------------------------------------------------------------------
# The budget figure's read-off equals running at the target epsilon.


def test_removals_supported_read_off_equals_direct_runs(smoke_root, tmp_path):
    root = smoke_root
    trajectories = figures.load_results(root, "budget")
    config, grid = runner.load_config(CONFIGS / "budget.py", smoke=True)
    epsilon = 1.0
    read_off = figures.removals_supported(trajectories, [epsilon])
    assert (~read_off["censored"]).any()
    for calibration in ("guo", "analytic"):
        # The same cells, run at the target epsilon and calibration: count the rows removed before
        # the first retrain.
        direct = runner.sweep(config, out=tmp_path / calibration, progress=False,
                              overrides={"epsilon": epsilon, "calibration": calibration,
                                         "l2_reg": grid[0]["l2_reg"], "num_removals": grid[0]["num_removals"]})
        for seed, rows in direct.groupby("seed"):
            rows = rows.sort_values("step")
            retrains = rows.index[rows["retrained"]]
            assert len(retrains), "the direct run must exhaust its budget for the comparison to be exact"
            before = rows.loc[rows["step"] < rows.loc[retrains[0], "step"], "num_removed"].iloc[-1]
            expected = read_off[(read_off["calibration"] == calibration) & (read_off["seed"] == seed)
                                & (read_off["l2_reg"] == grid[0]["l2_reg"])]
            assert len(expected) == 1 and not expected["censored"].iloc[0]
            assert expected["supported"].iloc[0] == before, (calibration, seed)


def test_removals_supported_marks_lower_bounds():
    def trajectory(spent, last_event="removal", budget=1.0):
        steps = len(spent)
        events = ["train"] + ["removal"] * (steps - 2) + [last_event]
        return pd.DataFrame({"cell": "c", "seed": 0, "step": range(steps), "event": events,
                             "residual_spent": spent, "num_removed": range(steps), "sigma": 1.0,
                             "delta": 1e-5, "residual_budget": budget, "converged": True, "l2_reg": 1e-3})

    budget_at_1 = cu.calibration.budget_for_sigma(1.0, epsilon=1.0, delta=1e-5, calibration="analytic")
    spent = np.array([0.0, 0.1, 0.2, 0.3]) * budget_at_1 / 0.25
    exceeded = figures.removals_supported(trajectory(spent), [1.0], ["analytic"])
    assert exceeded[["supported", "censored"]].values.tolist() == [[2, False]]
    short = figures.removals_supported(trajectory(spent[:3]), [1.0], ["analytic"])
    assert short[["supported", "censored"]].values.tolist() == [[2, True]]  # never exceeded: lower bound
    # A retrain forced by a budget above the target's: the step that forced it exceeds the target too.
    forced = trajectory(np.r_[spent[:3], 0.0], last_event="retrain", budget=budget_at_1 * 1.1)
    assert figures.removals_supported(forced, [1.0], ["analytic"])["censored"].tolist() == [False]
    # ... but under a larger target budget it is only a lower bound.
    assert figures.removals_supported(forced, [2.0], ["analytic"])["censored"].tolist() == [True]


def test_every_experiment_family_has_a_smoke_variant_and_a_figure():
    # A family without a figure (or a figure script without a registered plot) would be silently skipped
    # by `certunlearn figures`.
    registry = figures.registry()
    configs = sorted(p for p in (REPO / "experiments" / "configs").glob("*.py") if not p.name.startswith("_"))
    assert len(configs) >= 10
    for path in configs:
        config, grid = runner.load_config(path, smoke=True)
        assert config.family in registry, f"{path.name}: family {config.family!r} has no registered figure"
        assert grid, path.name
    for script in SCRIPTS.glob("fig_*.py"):
        name = script.stem[len("fig_"):]
        assert name in registry, f"{script.name} draws {name!r}, which figures.registry() does not know"
