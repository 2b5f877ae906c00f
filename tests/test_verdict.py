"""The verdict on crafted result sets (the acceptance matrix of issue 8), on an edited real
run, and on a real timed-out mode."""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import harness.analysis.results as results_module
import harness.analysis.verdict as verdict_module
from harness.analysis.stats import Sample, compare_samples
from harness.analysis.verdict import (GUARANTEE_RATIO, Budgets, ModeResult, analyze, decide,
                                      headline, mode_results)
from harness.records import load_run
from harness.report.tables import print_verdict
from tests.runhelp import run_scenario

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"
# Test data only: the verdict itself reads simplicity from the result, never from a name.
SIMPLICITY = {"serial": 0, "grouped": 1, "threads": 2, "threads[8]": 2, "asyncio": 3,
              "processes": 4, "dask": 5}
OUTCOMES = {"recommended", "inconclusive", "slower", "discarded"}


def result(label: str, makespans: list[float], simplicity: float | None = None,
           **extra) -> ModeResult:
    """A mode that finished every cell cleanly, unless ``extra`` says otherwise."""
    defaults = dict(statuses={"ok": len(makespans)}, verify_ok=True, units_total=100,
                    p99_ms=10.0, memory_peak_mb=50.0)
    defaults.update(extra)
    censored = defaults.pop("censored", None)
    simplicity = SIMPLICITY.get(label, 9) if simplicity is None else simplicity
    return ModeResult(label, simplicity, Sample.of(makespans, censored), **defaults)


def repeats_advised(summary: str) -> int:
    match = re.search(r"about (\d+) repeats per mode would decide \(run --repeat (\d+)\)",
                      summary)
    assert match, summary
    assert match.group(1) == match.group(2)
    return int(match.group(1))


SERIAL = [10.0, 10.1, 10.2]
SERIAL5 = [10.0, 10.1, 10.2, 10.3, 10.4]


# The acceptance matrix (issue 8, "Why" §1).

def test_one_repeat_with_a_13x_gap_is_inconclusive_never_serial():
    verdict = decide([result("serial", [27.7]), result("threads[8]", [2.1])], Budgets())
    assert verdict.recommended is None and verdict.outcome == "inconclusive"
    assert verdict.status == {"serial": "inconclusive", "threads[8]": "inconclusive"}
    assert verdict.summary.startswith(
        "inconclusive: threads[8] observed 13.2x faster than serial (n=1 vs 1: one repeat "
        "cannot show a difference); about 3 repeats per mode would decide (run --repeat 3)")
    assert "assuming 10% run-to-run noise" in verdict.summary  # the prior, said as such
    assert repeats_advised(verdict.summary) == 3


def test_three_repeats_with_one_slow_outlier_never_recommend_serial():
    verdict = decide([result("serial", [2.45, 2.5, 2.55]),
                      result("threads", [1.20, 1.22, 2.6])], Budgets())
    assert verdict.recommended != "serial"
    assert verdict.outcome == "inconclusive"
    assert "threads observed 2.05x faster than serial (n=3 vs 3: samples overlap)" \
        in verdict.summary
    assert 3 < repeats_advised(verdict.summary) <= 30
    assert "pooled CV" in verdict.summary


def test_a_clean_5_percent_gap_keeps_the_simpler_mode():
    threads = [9.5, 9.6, 9.7, 9.8, 9.9]
    diff = compare_samples(Sample.of(threads), Sample.of(SERIAL5))
    assert diff.significant and diff.method == "mann-whitney"  # real, but small
    verdict = decide([result("serial", SERIAL5), result("threads", threads)], Budgets())
    assert verdict.recommended == "serial" and verdict.outcome == "recommended"
    assert verdict.status["threads"] == "slower"
    assert "5% faster than serial, under --min-gain 20%, and serial is simpler" \
        in verdict.reasons["threads"][0]
    # --min-gain decides: asking for 1% lets the significant 5% win.
    assert decide([result("serial", SERIAL5), result("threads", threads)],
                  Budgets(min_gain=0.01)).recommended == "threads"


def test_of_one_kind_fewer_workers_is_simpler_unless_more_earn_it():
    """processes[2] vs processes[3], one executor: seen here at medians 0.503 vs 0.494 s
    (n=3), and the verdict recommended processes[3] "because it is simpler"."""
    two = result("processes[2]", [0.503, 0.442, 0.513], simplicity=40, workers=2)
    three = result("processes[3]", [0.494, 0.467, 0.519], simplicity=40, workers=3)
    verdict = decide([three, two], Budgets())
    assert verdict.recommended == "processes[2]"
    assert "processes[2] is simpler (fewer workers)" in verdict.reasons["processes[3]"][0]
    faster = result("processes[3]", [0.25, 0.251, 0.252, 0.253, 0.254], simplicity=40, workers=3)
    slow = result("processes[2]", [0.5, 0.501, 0.502, 0.503, 0.504], simplicity=40, workers=2)
    assert decide([slow, faster], Budgets()).recommended == "processes[3]"


def test_a_clean_2x_gap_recommends_the_complex_mode_with_its_confidence_level():
    verdict = decide([result("serial", SERIAL5),
                      result("threads", [5.0, 5.05, 5.1, 5.15, 5.2])], Budgets())
    assert verdict.recommended == "threads" and verdict.outcome == "recommended"
    assert verdict.status == {"serial": "slower", "threads": "recommended"}
    why = "; ".join(verdict.reasons["threads"])
    assert "significantly faster than serial: 2.00x its speed" in why
    assert "95% bootstrap interval" in why and "two-sided Mann-Whitney p=0.00794" in why
    assert "fastest that finished cleanly: median 5.100 s" in why


def test_overlapping_samples_with_a_large_observed_gap_are_inconclusive():
    serial = [10.0, 12.0, 14.0, 16.0, 11.0]
    threads = [6.0, 7.0, 8.0, 13.0, 15.0]
    verdict = decide([result("serial", serial), result("threads", threads)], Budgets())
    assert verdict.recommended is None and verdict.outcome == "inconclusive"
    assert "threads observed 1.50x faster than serial (n=5 vs 5: Mann-Whitney p=0.31, not " \
        "under 0.05)" in verdict.summary
    assert repeats_advised(verdict.summary) > 5  # more than what was run already
    assert verdict.status == {"serial": "inconclusive", "threads": "inconclusive"}
    assert "would be recommended" in verdict.reasons["serial"][0]
    title, detail = headline(verdict.to_dict())
    assert title == "Inconclusive" and detail.startswith("threads observed 1.50x faster")


@pytest.mark.parametrize("extra,reason", [
    (dict(harness_errors=1, bound_s=1.0),
     "harness error: measured 0.900 s below its bound 1.000 s in 1 of 3 cells"),
    # Efficiency above 1 is caught from the bound even when no harness error was counted.
    (dict(bound_s=1.0), "harness error: measured 0.900 s below its bound 1.000 s"),
    (dict(harness_errors=2), "harness error: measured below the scenario's bound in 2 of 3"),
    (dict(statuses={"ok": 2, "harness-error": 1}), "hit a harness error in 1 of 3 cells"),
    (dict(statuses={"ok": 2, "service-down": 1}), "met a service that was down in 1 of 3"),
    (dict(statuses={"ok": 2, "parent-died": 1}), "lost the observing parent in 1 of 3"),
    (dict(statuses={"ok": 2, "crashed": 1}), "crashed in 1 of 3 cells"),
])
def test_a_harness_error_or_a_bad_cell_discards_the_mode(extra, reason):
    verdict = decide([result("serial", SERIAL), result("threads", [0.9, 1.2, 1.3], **extra)],
                     Budgets())
    assert verdict.status["threads"] == "discarded"
    assert any(reason in why for why in verdict.reasons["threads"]), verdict.reasons
    assert verdict.recommended == "serial"


def test_a_mode_whose_units_failed_ends_below_the_bound_without_a_harness_error():
    """The article's fan-out: 39 % of its fetches failed, so it ended before the bound that
    assumes every file was loaded. Discarded for its failures, never called a harness bug."""
    fanout = result("fanout", [0.9, 0.95, 0.92], bound_s=1.0, failed_units=58, units_total=150)
    verdict = decide([result("serial", SERIAL, bound_s=1.0), fanout], Budgets())
    assert verdict.status["fanout"] == "discarded"
    why = "; ".join(verdict.reasons["fanout"])
    assert "58 of 150 units failed" in why and "harness error" not in why


def _random_modes(rng: np.random.Generator) -> tuple[list[ModeResult], Budgets]:
    modes = []
    for i in range(int(rng.integers(2, 5))):
        n = int(rng.integers(1, 7))
        median = float(np.exp(rng.uniform(0, np.log(30))))
        cv = float(rng.choice([0.0, 0.02, 0.1, 0.3, 0.6]))
        values = median * np.exp(cv * rng.standard_normal(n))
        modes.append(result(f"m{i}", list(values), simplicity=float(rng.integers(0, 4))))
    return modes, Budgets(min_gain=float(rng.choice([0.0, 0.05, 0.2, 0.5, 1.0, 2.0])))


@pytest.mark.parametrize("seed", range(8))
def test_never_recommends_a_mode_while_a_clean_one_is_1_5x_faster(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        modes, budgets = _random_modes(rng)
        verdict = decide(modes, budgets)
        assert set(verdict.status.values()) <= OUTCOMES
        assert (verdict.recommended is None) == (verdict.outcome != "recommended")
        assert list(verdict.status.values()).count("recommended") == \
            (verdict.outcome == "recommended")
        if verdict.outcome == "inconclusive":
            assert list(verdict.status.values()).count("inconclusive") >= 2
        if verdict.recommended is None:
            continue
        chosen = next(m for m in modes if m.label == verdict.recommended)
        for m in modes:
            assert chosen.median / m.median < GUARANTEE_RATIO, (verdict.summary, m.label)
            if m.median < chosen.median:  # nothing clean ran faster by --min-gain or more
                assert chosen.median / m.median - 1 < budgets.min_gain


def test_the_guarantee_holds_when_min_gain_alone_would_keep_the_slower_mode():
    # 1.6x faster and significant, but --min-gain 100% would keep serial: the guarantee wins.
    threads = [x / 1.6 for x in SERIAL5]
    verdict = decide([result("serial", SERIAL5), result("threads", threads)],
                     Budgets(min_gain=1.0))
    assert verdict.recommended is None and verdict.outcome == "inconclusive"
    assert "threads observed 1.60x faster than serial (significant, but under --min-gain " \
        "100%" in verdict.summary and "lower --min-gain to decide" in verdict.summary
    assert "repeats per mode" not in verdict.summary  # more repeats cannot change it


@pytest.mark.parametrize("n", [3, 5, 10])
def test_a_and_a_never_recommends_the_more_complex_mode(n):
    rng = np.random.default_rng(n)
    for _ in range(60):
        same = [list(10 * np.exp(0.05 * rng.standard_normal(n))) for _ in range(2)]
        verdict = decide([result("serial", same[0]), result("processes", same[1])], Budgets())
        assert verdict.recommended != "processes", verdict.summary
        assert verdict.outcome in ("recommended", "inconclusive")


# The rules around the matrix.

def test_the_verdict_names_no_mode():
    for module in (verdict_module, results_module):
        source = inspect.getsource(module)
        assert "harness.modes" not in source and "FALLBACK_SIMPLICITY" not in source
        strings = {node.value for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not strings & set(SIMPLICITY), module.__name__  # no branch on a mode name
    # Renamed modes with the same simplicity get the same verdict.
    verdict = decide([result("a", SERIAL, 0), result("b", [5.0, 5.05, 5.1], 1)], Budgets())
    assert verdict.recommended == "b"
    verdict = decide([result("a", SERIAL, 1), result("b", [9.9, 10.0, 10.1], 0)], Budgets())
    assert verdict.recommended == "b"  # equally fast: the simpler one, whatever its name


def test_a_fast_mode_that_fails_verify_is_never_recommended():
    verdict = decide([result("serial", SERIAL),
                      result("processes", [1.0, 1.01, 1.02], verify_ok=False,
                             verify_failed="rows landed")], Budgets())
    assert verdict.recommended == "serial"
    assert verdict.status["processes"] == "discarded"
    assert "failed verify: rows landed" in verdict.reasons["processes"][0]


def test_an_unverified_mode_can_win_but_says_so():
    verdict = decide([result("serial", SERIAL, verify_ok=None),
                      result("threads", [2.0, 2.01, 2.02], verify_ok=None)], Budgets())
    assert verdict.recommended == "threads"
    assert "threads is unverified: the scenario has no checks, so correctness was not " \
        "measured" in verdict.warnings


def test_the_fastest_by_a_significant_margin_wins():
    verdict = decide([result("serial", SERIAL), result("threads", [5.0, 5.05, 5.1]),
                      result("processes", [2.0, 2.01, 2.02])], Budgets())
    assert verdict.recommended == "processes"
    assert verdict.status == {"serial": "slower", "threads": "slower",
                              "processes": "recommended"}
    assert "significantly faster than threads" in verdict.reasons["processes"][0]
    assert "fastest that finished cleanly" in verdict.reasons["processes"][1]


def test_a_gain_under_min_gain_between_complex_modes_keeps_the_simpler():
    # processes is 10% faster than threads (significant), threads 2x faster than serial.
    verdict = decide([result("serial", SERIAL), result("threads", [5.0, 5.01, 5.02]),
                      result("processes", [4.5, 4.51, 4.52])], Budgets())
    assert verdict.recommended == "threads"
    assert verdict.status["processes"] == "slower"
    assert "under --min-gain 20%, and threads is simpler" in verdict.reasons["processes"][0]


def test_equally_fast_modes_go_to_the_simpler():
    verdict = decide([result("serial", SERIAL), result("threads", [5.0, 5.3, 5.6]),
                      result("processes", [4.9, 5.2, 5.7])], Budgets())
    assert verdict.recommended == "threads"
    assert verdict.status["processes"] == "slower"
    assert "2% faster than threads, under --min-gain 20%, and threads is simpler" \
        in verdict.reasons["processes"][0]
    assert "samples overlap" in verdict.reasons["processes"][0]
    verdict = decide([result("grouped", [10.0, 10.3, 10.6]),
                      result("serial", [10.1, 10.2, 10.5])], Budgets())
    assert verdict.recommended == "serial"
    assert verdict.reasons["grouped"][0].startswith(
        "slower than serial, not significantly, and serial is simpler")


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
             result("processes", [1.0, 1.01, 1.02], memory_peak_mb=900.0)]
    verdict = decide(modes, Budgets(p99_budget_ms=50.0, max_memory_mb=500.0))
    assert verdict.recommended == "serial"
    assert "p99 latency 80.0 ms over the p99 budget 50 ms" in verdict.reasons["threads"][0]
    assert "peak memory (PSS) 900 MB over the memory budget 500 MB" \
        in verdict.reasons["processes"][0]
    assert decide(modes, Budgets()).recommended == "processes"


def test_budgets_from_a_run_json_with_max_memory():
    run = {"budgets": {"error_budget": 0.01, "max_memory_mb": 256.0, "min_gain": 0.3},
           "config": {"max_memory_mb": 999.0}}
    assert Budgets.from_run(run) == Budgets(0.01, None, 256.0, 0.3)
    assert Budgets.from_run({"config": {"max_memory_mb": 64.0}}).max_memory_mb == 64.0
    assert Budgets.from_run(run, min_gain=0.1, p99_budget_ms=None).min_gain == 0.1


def test_nothing_recommended_when_everything_is_discarded():
    verdict = decide([result("serial", SERIAL, verify_ok=False)], Budgets())
    assert verdict.recommended is None and verdict.outcome == "none"
    assert "every mode was discarded" in verdict.summary


def test_over_optimization_warning_is_against_the_baseline():
    small_gain = [9.0, 9.05, 9.1]  # 12% faster than the baseline
    base = dict(simplicity=0, baseline=True)
    verdict = decide([result("bare", SERIAL, **base),
                      result("pool", small_gain, 3, memory_peak_mb=400.0, p99_ms=25.0)],
                     Budgets())
    assert verdict.recommended == "bare"  # and the gain is under --min-gain: the trade is
    [warning] = verdict.warnings
    assert warning.startswith("over-optimization: pool runs at 1.12x bare's speed")
    assert "peak memory (PSS) 400 MB vs 50 MB" in warning
    assert "p99 latency 25.0 ms vs 10.0 ms" in warning
    # The same cost for a 3x gain is a trade worth making: no warning.
    assert not decide([result("bare", SERIAL, **base),
                       result("pool", [3.3, 3.31, 3.32], 3, memory_peak_mb=400.0)],
                      Budgets()).warnings
    # A small gain that adds nothing is no over-optimization either.
    assert not decide([result("bare", SERIAL, **base), result("pool", small_gain, 3)],
                      Budgets()).warnings


def test_print_verdict_says_inconclusive():
    console = Console(record=True, width=200)
    print_verdict(decide([result("serial", [27.7]), result("threads[8]", [2.1])], Budgets()),
                  console)
    text = console.export_text()
    assert text.startswith("Inconclusive: threads[8] observed 13.2x faster than serial")
    assert "Recommended" not in text and "serial: inconclusive: would be recommended" in text


def test_mode_results_read_the_table_with_fallbacks():
    cells = pd.DataFrame([
        {"label": "a", "warmup": False, "status": "ok", "makespan_s": 2.0, "censored": False,
         "verify_ok": None, "bound_s": 1.0},
        {"label": "b", "warmup": False, "status": "ok", "makespan_s": 0.5, "censored": False,
         "verify_ok": True, "bound_s": 1.0},
        {"label": "b", "warmup": False, "status": "timeout", "makespan_s": 3.0,
         "censored": True, "verify_ok": True, "bound_s": 1.0},
    ])
    old = pd.DataFrame([
        {"mode": "a", "verify_ok": True, "verify_failed": "", "error_count": 0, "not_run": 1,
         "units_total": 10, "p99_ms": 5.0, "rss_peak_mb": 30.0, "bound_s": 1.0},
        {"mode": "b", "verify_ok": True, "verify_failed": "", "error_count": 2, "not_run": 0,
         "units_total": 10, "p99_ms": 6.0, "rss_peak_mb": 40.0, "bound_s": 1.0},
    ])
    a, b = mode_results(cells, old, timeout_s=3.0)
    assert (a.simplicity, b.simplicity) == (0, 1)  # row order
    assert a.verify_ok is None and b.verify_ok is True  # no checks ran: unverified
    assert (a.memory_peak_mb, a.failed_units, a.harness_errors, a.baseline) == (30.0, 1, 0, False)
    assert b.harness_errors == 1 and b.statuses == {"ok": 1, "timeout": 1}
    assert list(b.sample.censored) == [False, True]
    new = old.assign(simplicity=[5.0, 2.0], memory_peak_mb=[20.0, 25.0],
                     harness_errors=[0, 0], baseline=[False, True], p99_ms=[7.0, 8.0])
    a, b = mode_results(cells, new)
    assert (a.simplicity, a.memory_peak_mb, a.p99_ms) == (5.0, 20.0, 7.0)
    assert b.baseline and not a.baseline and b.harness_errors == 0
    assert math.isnan(mode_results(cells, old.drop(columns=["p99_ms"]))[0].p99_ms)


# Real runs.

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
    assert analysis.verdict.recommended == "threads[8]"
    assert analysis.verdict.reasons["serial"][0].startswith("timed out in 2 of 2 cells")
