"""The verdict on crafted result sets, on an edited real run, and on a real timed-out mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.stats import Sample
from harness.analysis.verdict import Budgets, ModeResult, analyze, decide, simplicity
from harness.records import load_run
from tests.runhelp import run_scenario

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"


def result(label: str, makespans: list[float], mode: str | None = None, **extra) -> ModeResult:
    """A mode that finished every cell cleanly, unless ``extra`` says otherwise."""
    defaults = dict(statuses={"ok": len(makespans)}, units_total=100, p99_ms=10.0,
                    rss_peak_mb=50.0)
    defaults.update(extra)
    censored = defaults.pop("censored", None)
    return ModeResult(label, mode or label, Sample.of(makespans, censored), **defaults)


SERIAL = [10.0, 10.1, 10.2]


def test_simplicity_order_comes_from_the_registry():
    names = ["serial", "grouped", "threads", "asyncio", "processes", "dask"]
    assert [simplicity(n) for n in names] == sorted(simplicity(n) for n in names)
    assert [simplicity(n) for n in names[:5]] == [0, 1, 2, 3, 4]


def test_a_fast_mode_that_fails_verify_is_never_recommended():
    verdict = decide([result("serial", SERIAL),
                      result("processes", [1.0, 1.01, 1.02], verify_ok=False,
                             verify_failed="rows landed")], Budgets())
    assert verdict.recommended == "serial"
    assert verdict.status["processes"] == "discarded"
    assert "failed verify: rows landed" in verdict.reasons["processes"][0]


def test_the_fastest_by_a_significant_margin_wins():
    verdict = decide([result("serial", SERIAL), result("threads", [5.0, 5.05, 5.1]),
                      result("processes", [2.0, 2.01, 2.02])], Budgets())
    assert verdict.recommended == "processes"
    assert verdict.status == {"serial": "slower", "threads": "slower",
                              "processes": "recommended"}
    assert "fastest that finished cleanly" in verdict.reasons["processes"][0]


def test_a_tie_goes_to_the_simpler_mode():
    # processes is a little faster, but the samples overlap: not significant.
    verdict = decide([result("serial", SERIAL), result("threads", [5.0, 5.3, 5.6]),
                      result("processes", [4.9, 5.2, 5.7])], Budgets())
    assert verdict.recommended == "threads"
    assert verdict.status["processes"] == "tied"
    assert "not significantly different" in verdict.reasons["threads"][0]
    assert "threads is not significantly slower" in verdict.reasons["processes"][0]
    # The same with serial: an equally fast parallel mode does not earn its complexity.
    verdict = decide([result("grouped", [10.0, 10.3, 10.6]), result("serial", [10.1, 10.2, 10.5])],
                     Budgets())
    assert verdict.recommended == "serial"


def test_a_timed_out_mode_is_censored_and_discarded():
    verdict = decide([result("serial", [30.0, 30.0, 30.0], statuses={"timeout": 3},
                             censored=[True] * 3),
                      result("threads", [8.0, 8.1, 8.2])], Budgets())
    assert verdict.recommended == "threads"
    assert verdict.reasons["serial"][0].startswith("timed out in 3 of 3 cells")


@pytest.mark.parametrize("budget,eligible", [(0.0, False), (0.05, True)])
def test_error_budget(budget, eligible):
    verdict = decide([result("serial", SERIAL), result("threads", [2.0, 2.01, 2.02],
                                                       failed_units=2)],
                     Budgets(error_budget=budget))
    assert (verdict.recommended == "threads") is eligible
    if not eligible:
        assert "2 of 100 units failed" in verdict.reasons["threads"][0]


def test_p99_and_memory_budgets():
    modes = [result("serial", SERIAL), result("threads", [2.0, 2.01, 2.02], p99_ms=80.0),
             result("processes", [1.0, 1.01, 1.02], rss_peak_mb=900.0)]
    verdict = decide(modes, Budgets(p99_budget_ms=50.0, max_memory_mb=500.0))
    assert verdict.recommended == "serial"
    assert "p99 80.0 ms over the p99 budget 50 ms" in verdict.reasons["threads"][0]
    assert "peak RSS 900 MB over the memory budget 500 MB" in verdict.reasons["processes"][0]
    verdict = decide(modes, Budgets())
    assert verdict.recommended == "processes"


def test_nothing_recommended_when_everything_is_discarded():
    verdict = decide([result("serial", SERIAL, verify_ok=False)], Budgets())
    assert verdict.recommended is None and "every mode was discarded" in verdict.summary


def test_over_optimization_warning():
    small_gain = [9.0, 9.05, 9.1]  # 12% faster than serial
    verdict = decide([result("serial", SERIAL),
                      result("processes", small_gain, rss_peak_mb=400.0, p99_ms=25.0)],
                     Budgets())
    assert verdict.recommended == "processes"
    [warning] = verdict.warnings
    assert "over-optimization: processes" in warning and "peak RSS 400 MB vs 50 MB" in warning
    assert "p99 25.0 ms vs 10.0 ms" in warning
    # The same cost for a 3x gain is a trade worth making: no warning.
    assert not decide([result("serial", SERIAL),
                       result("processes", [3.3, 3.31, 3.32], rss_peak_mb=400.0)],
                      Budgets()).warnings
    # A small gain that adds nothing is no over-optimization either.
    assert not decide([result("serial", SERIAL), result("threads", small_gain)],
                      Budgets()).warnings


def test_edited_real_run_never_recommends_a_mode_that_failed_verify(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    assert analyze(load_run(run_dir)).verdict.recommended == "threads"
    for cell_file in run_dir.glob("cells/*-threads-*/cell.json"):
        cell = json.loads(cell_file.read_text())
        cell["verify"][0].update(ok=False, actual=11)
        cell_file.write_text(json.dumps(cell))
    verdict = analyze(load_run(run_dir)).verdict
    assert verdict.recommended not in (None, "threads")
    assert verdict.status["threads"] == "discarded"
    assert "failed verify: units executed exactly once" in verdict.reasons["threads"]


def test_real_timed_out_mode_is_censored(tmp_path):
    # 12 units of 150 ms: serial needs 1.8 s and is killed at 1.2 s; threads need 0.3 s.
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads"],
                       {"units": 12, "cost_ms": 150}, repeat=2, timeout_s=1.2)
    analysis = analyze(run)
    serial = analysis.table.set_index("mode").loc["serial"]
    assert serial["censored_cells"] == 2 and serial["wall_is_bound"]
    assert np.isinf(serial["wall_ci_high"])
    assert analysis.verdict.recommended == "threads"
    assert analysis.verdict.reasons["serial"][0].startswith("timed out in 2 of 2 cells")
