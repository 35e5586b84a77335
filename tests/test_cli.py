"""Tests of the ``certunlearn`` command line and the demo (digits 3 vs 8: small and fast)."""

import io
import json
import math
import subprocess
import sys

import pytest

from certunlearn.cli import SUBCOMMANDS, main
from certunlearn.demo import run_demo

RECORD_FIELDS = {
    "step", "index", "residual_bound", "residual_spent", "residual_budget", "epsilon", "retrained",
    "exact_residual", "seconds", "retrain_seconds", "acc_unlearned", "acc_retrained", "param_distance",
}
SUMMARY_FIELDS = {
    "removals", "retrains", "retrain_steps", "certificate", "median_removal_seconds", "retrain_seconds",
    "speedup", "acc_unlearned", "acc_retrained", "param_distance", "noise_distance", "versions", "git",
    "device", "wall_seconds",
}


def test_demo_command_writes_certified_records_and_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    status = main(["demo", "--removals", "12", "--retrain-every", "6", "--out", str(out), "--no-progress",
                   "--epsilon", "1.0", "--seed", "1"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["demo.png", "results.json"]  # no temporary files left

    results = json.loads((out / "results.json").read_text())
    assert results["config"]["dataset"] == "digits" and results["config"]["classes"] == [3, 8]
    assert SUMMARY_FIELDS <= set(results["summary"])
    records = results["records"]
    assert len(records) == 12
    assert [r["step"] for r in records] == list(range(1, 13))
    assert len({r["index"] for r in records}) == 12
    for r in records:
        assert set(r) == RECORD_FIELDS
        assert r["residual_spent"] <= r["residual_budget"]
        assert r["epsilon"] <= results["config"]["epsilon"]
        assert r["exact_residual"] <= r["residual_spent"]  # the accumulated bound is an upper bound
        assert 0.9 < r["acc_unlearned"] <= 1.0
    checkpoints = [r["step"] for r in records if r["acc_retrained"] is not None]
    assert checkpoints == [6, 12]
    # Same noise draw as the unlearned model, so the distance is the Newton step's error: far below noise.
    assert records[-1]["param_distance"] < 0.1 * results["summary"]["noise_distance"]
    assert results["summary"]["certificate"]["epsilon"] <= 1.0

    png = (out / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    printed = capsys.readouterr().out
    assert "12 removals" in printed and "acc retrained" in printed


def test_bad_epsilon_exits_2_with_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["demo", "--epsilon", "-1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "epsilon" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("argv", [["demo", "--bound", "bogus"], ["demo", "--classes", "3"], ["nope"], []])
def test_bad_usage_exits_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_help_exits_0_and_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


def test_run_demo_tiny_budget_forces_a_recorded_retrain(tmp_path):
    stream = io.StringIO()
    results = run_demo(num_removals=6, residual_budget=1e-3, retrain_every=100, progress=False,
                       out=tmp_path, stream=stream)
    records, summary = results["records"], results["summary"]
    retrained = [r for r in records if r["retrained"]]
    assert retrained, "a budget of 1e-3 should run out within 6 removals on digits"
    assert summary["retrains"] == len(retrained) == summary["certificate"]["retrains"]
    assert summary["retrain_steps"] == [r["step"] for r in retrained]
    for r in retrained:
        # After a retrain the spent residual is the new training residual, far inside the budget.
        assert r["residual_spent"] == r["residual_bound"] < 1e-6
        assert r["retrain_seconds"] > 0
    for r in records:
        assert r["residual_spent"] <= r["residual_budget"] == pytest.approx(1e-3)
        assert r["epsilon"] <= 1.0
    assert records[-1]["acc_retrained"] is not None and math.isfinite(records[-1]["param_distance"])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert "retrained" in stream.getvalue()


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "certunlearn", "demo", "--help"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and "--removals" in done.stdout
