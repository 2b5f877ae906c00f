"""compare / history / nightly on real calibrate runs: a real regression (longer units),
a real correctness failure (a crashing cell), the fingerprint gate and the exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.compare import compare_runs, fingerprint_id
from harness.analysis.history import load_history, previous_comparable
from harness.cli import main
from harness.commands.exitcodes import (EXIT_CORRECTNESS, EXIT_HARNESS, EXIT_OK,
                                        EXIT_REGRESSION, EXIT_USAGE)
from harness.records import load_run
from tests.runhelp import run_scenario

HARNESS = [sys.executable, "-m", "harness"]
SMALL = {"units": 12, "cost_ms": 5}


def _run(out: Path, **params):
    return run_scenario(out, "calibrate", ["serial", "threads"], {**SMALL, **params}, repeat=3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return {"out": out, "baseline": _run(out), "slower": _run(out, cost_ms=15),
            "broken": _run(out, crash_at=5)}


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_longer_units_are_a_significant_regression(runs):
    comparison = compare_runs(runs["baseline"], runs["slower"])
    assert comparison.exit_code == EXIT_REGRESSION
    serial = next(c for c in comparison.changes if c.mode == "serial")
    assert serial.status == "regression" and serial.difference.significant
    assert 2.0 < serial.difference.ratio < 3.5  # 15 ms vs 5 ms units, plus fixed overhead
    assert comparison.mismatches == {"param cost_ms": (5.0, 15.0)}
    # Seen from the slower run, the faster one is an improvement, never a regression.
    back = compare_runs(runs["slower"], runs["baseline"])
    assert back.exit_code == EXIT_OK
    assert next(c for c in back.changes if c.mode == "serial").status == "improvement"


def test_a_run_against_itself_is_unchanged(runs):
    comparison = compare_runs(runs["baseline"], runs["baseline"])
    assert comparison.exit_code == EXIT_OK and comparison.comparable
    assert {c.status for c in comparison.changes} == {"unchanged"}


def test_verify_failing_where_the_baseline_passed_is_exit_3(runs):
    comparison = compare_runs(runs["baseline"], runs["broken"])
    assert comparison.exit_code == EXIT_CORRECTNESS
    assert {c.status for c in comparison.changes} == {"correctness"}
    # Both broken: not a new correctness failure.
    assert compare_runs(runs["broken"], runs["broken"]).exit_code == EXIT_OK


def test_a_failed_candidate_run_is_exit_4(runs, tmp_path):
    failed = tmp_path / "failed"
    shutil.copytree(runs["baseline"].path, failed)
    run = json.loads((failed / "run.json").read_text())
    (failed / "run.json").write_text(json.dumps(dict(run, status="failed: ServiceError: x")))
    comparison = compare_runs(runs["baseline"], load_run(failed))
    assert comparison.exit_code == EXIT_HARNESS
    assert "did not finish: failed: ServiceError: x" in comparison.harness_problems[0]


def test_compare_cli_exit_codes(runs):
    base, slower = str(runs["baseline"].path), str(runs["slower"].path)
    refused = harness("compare", base, slower)
    assert refused.returncode == EXIT_USAGE
    assert "param cost_ms differs: 5.0 -> 15.0" in refused.stdout
    allowed = harness("compare", base, slower, "--allow-mismatch")
    assert allowed.returncode == EXIT_REGRESSION, allowed.stdout + allowed.stderr
    assert "regression" in allowed.stdout and "exit 1" in allowed.stdout
    # A 500% threshold turns the same slowdown into an accepted one.
    assert main(["compare", base, slower, "--allow-mismatch", "--threshold", "500%"]) == EXIT_OK


def test_history_lists_runs_and_fingerprints(runs):
    history = load_history(runs["out"], "calibrate")
    assert len(set(history.frame["run_id"])) == 3
    assert set(history.frame["mode"]) == {"serial", "threads[8]"}
    assert len(history.fingerprints) == 3  # three parameter sets
    assert fingerprint_id(runs["baseline"].run) == history.frame["fingerprint"].iloc[0]
    assert previous_comparable(runs["out"], "calibrate", runs["slower"].path) is None


def test_nightly_compares_with_the_previous_comparable_run(tmp_path):
    args = ["nightly", "calibrate", "--modes", "serial,threads", "--repeat", "3",
            "--no-warmup", "--param", "units=12", "--param", "cost_ms=5", "--out",
            str(tmp_path), "--no-progress", "--no-report", "--threshold", "500%"]
    first = harness(*args)
    assert first.returncode == EXIT_OK, first.stdout + first.stderr
    assert "this run is the baseline for the next one" in first.stdout
    second = harness(*args)
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    [earlier, later] = sorted((tmp_path / "calibrate").iterdir())
    assert f"baseline:  {earlier}" in second.stdout and f"candidate: {later}" in second.stdout
    assert previous_comparable(tmp_path, "calibrate", later) == earlier
    history = harness("history", "calibrate", "--out", str(tmp_path))
    assert history.returncode == EXIT_OK and earlier.name in history.stdout
    assert (tmp_path / "calibrate" / "history-wall_s.png").read_bytes()[:4] == b"\x89PNG"


def _synthetic(path: Path, makespans: list[float]):
    from harness.records import RunData

    cells = [{"cell_id": f"{i:03d}-serial-r{i + 1}", "index": i, "mode": "serial",
              "label": "serial", "repeat": i + 1, "warmup": False, "status": "ok",
              "censored": False, "makespan_s": m, "verify": []}
             for i, m in enumerate(makespans)]
    return RunData(path, {"run_id": path.name, "status": "finished"}, cells, {}, {})


def test_the_regression_limit_scales_with_the_noise(tmp_path):
    quiet = _synthetic(tmp_path / "a", [1.00, 1.01, 0.99])
    quiet_slower = _synthetic(tmp_path / "b", [1.20, 1.21, 1.19])
    noisy = _synthetic(tmp_path / "c", [1.00, 1.15, 0.88])
    noisy_slower = _synthetic(tmp_path / "d", [1.26, 1.28, 1.30])
    # 1.2x with 1% noise: a regression at the 10% threshold.
    assert compare_runs(quiet, quiet_slower).exit_code == EXIT_REGRESSION
    # 1.28x with 13% noise: significant, but within 2.5 standard deviations of that noise.
    change = compare_runs(noisy, noisy_slower).changes[0]
    assert change.difference.significant and change.status == "within threshold"
    assert change.limit > 0.25


def test_nightly_pools_the_last_runs_as_its_baseline(tmp_path):
    from harness.analysis.compare import pool_runs

    history = [_synthetic(tmp_path / f"r{i}", [1.0 + 0.05 * i, 1.01 + 0.05 * i, 0.99 + 0.05 * i])
               for i in range(5)]
    pooled = pool_runs(history)
    assert len(pooled.cells) == 15 and pooled.path == history[-1].path
    # Night-to-night drift of 5% a night: the next night's 1.15 is within what history shows,
    # though against the last run alone (1.20, spread 1%) it would be an "improvement".
    candidate = _synthetic(tmp_path / "next", [1.15, 1.16, 1.14])
    assert compare_runs(pooled, candidate).exit_code == EXIT_OK
    slower = _synthetic(tmp_path / "slow", [1.80, 1.82, 1.79])
    assert compare_runs(pooled, slower).exit_code == EXIT_REGRESSION
