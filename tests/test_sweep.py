"""harness sweep: the adaptive search, the USL fit, the recommendation, and the theory check
(the fitted sigma recovers a known serial fraction)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.analysis.sweep import Knob, PointResult, Search, SweepError, summarize_series
from harness.analysis.usl import fit_usl, usl
from harness.config import RunConfig
from harness.records import load_run
from harness.report.sweep import write_sweep_report
from harness.sweeprun import SweepConfig, load_sweep, point_mode, run_sweep


def _point(n: int, throughput: float, error_rate: float = 0.0) -> PointResult:
    return PointResult(n, f"threads[{n}]", throughput, 1.0, 1.0, 1.0, error_rate, error_rate == 0)


def _search(truth, lo=1, hi=256, budget=10) -> list[int]:
    search, seen = Search(lo, hi, budget), []
    while (n := search.next()) is not None:
        seen.append(n)
        search.observe(_point(n, *truth(n)))
    return seen


def test_the_search_doubles_then_bisects_near_the_knee_within_ten_points():
    def truth(n):  # USL with N* ~ 22, errors from 100 on
        return usl(np.array([n]), 100, 0.05, 0.002)[0], (0.6 if n >= 100 else 0.0)

    seen = _search(truth)
    assert len(seen) <= 10 and seen[:5] == [1, 2, 4, 8, 16]
    assert 256 not in seen  # past the knee: doubling stopped
    assert any(16 < n < 32 for n in seen)  # bisected between the best point and its neighbour


def test_the_search_stops_doubling_when_errors_take_over():
    seen = _search(lambda n: (10.0 * n, 0.9 if n >= 8 else 0.0), hi=256)
    assert 8 in seen and 16 not in seen


def test_knobs_parse_ranges_and_lists_with_a_shared_unit():
    assert Knob.parse("workers=1..256") == Knob("workers", lo=1, hi=256)
    assert Knob.parse("stagger=0,100,200ms").values == ("0ms", "100ms", "200ms")
    with pytest.raises(SweepError):
        Knob.parse("workers=8..2")
    base = RunConfig(scenario="calibrate")
    capped = SweepConfig(base, "threads", "capped", (Knob.parse("cap=1..8"),))
    assert point_mode(capped, {"cap": "2", "stagger": "100ms"}) == "threads+capped(2,100ms)"
    assert point_mode(SweepConfig(base, "threads"), {"workers": "64"}) == "threads[64]"
    with pytest.raises(SweepError, match="varies"):
        point_mode(capped, {"handlers": "3"})


def test_the_usl_fit_recovers_known_parameters_with_intervals():
    ns = [1, 2, 4, 8, 16, 32, 64]
    fit = fit_usl(ns, list(usl(np.array(ns), 50.0, 0.08, 0.001)))
    assert fit.sigma == pytest.approx(0.08, rel=0.02) and fit.kappa == pytest.approx(0.001, rel=0.05)
    assert fit.sigma_ci[0] <= fit.sigma <= fit.sigma_ci[1]
    assert fit.n_star == pytest.approx(np.sqrt(0.92 / 0.001), rel=0.05)


def test_the_recommendation_is_the_smallest_within_five_percent_of_the_best_clean():
    points = [_point(1, 10), _point(2, 19), _point(4, 33), _point(8, 34), _point(16, 40, 0.1)]
    summary = summarize_series(points)
    assert summary.best_clean.n == 8 and summary.recommended.n == 4  # 33 >= 0.95 * 34
    assert summary.error_onset == 16  # the faster point failed units: never recommended


def test_the_fitted_sigma_recovers_the_lock_fraction(tmp_path):
    """Theory check: each unit stops the world for a fraction f of its time (Amdahl), so the
    USL's contention sigma is f; a sweep of real cells must recover it within 10 %. Units of
    100 ms make each exclusive section 25 ms, so a lock hand-off delayed by a busy shared machine
    (about a millisecond; with 10 ms sections one CI run fitted 0.285) stays well inside the band."""
    f = 0.25
    base = RunConfig(scenario="calibrate", repeat=1, warmup=False, out=tmp_path, progress=False,
                     params={"units": "64", "groups": "1", "cost_ms": "100",
                             "lock_fraction": str(f), "receipts": "true"})
    sweep = SweepConfig(base, "threads", knobs=(Knob.parse("workers=1,2,4,8,16,32"),))
    run_dir = run_sweep(sweep)
    layout, (summary,) = load_sweep(run_dir)
    assert [p.n for p in summary.points] == [1, 2, 4, 8, 16, 32]
    assert all(p.clean for p in summary.points), [(c["label"], c["status"], c["message"])
                                                   for c in load_run(run_dir).cells]
    assert summary.fit.sigma == pytest.approx(f, rel=0.10), (summary.fit, summary.points)
    md, png = write_sweep_report(run_dir, layout, [summary])
    assert "σ (contention)" in md.read_text() and png.stat().st_size > 1000
    assert json.loads((run_dir / "sweep.json").read_text())["axis"] == "workers"


def test_a_point_over_the_p99_budget_is_not_clean_and_never_recommended(tmp_path):
    base = RunConfig(scenario="calibrate", repeat=1, warmup=False, out=tmp_path, progress=False,
                     params={"units": "8", "cost_ms": "20"}, budgets={"p99_budget_ms": 30.0})
    sweep = SweepConfig(base, "threads", knobs=(Knob.parse("workers=1,8"),))
    layout, (summary,) = load_sweep(run_sweep(sweep))
    by_n = {p.n: p for p in summary.points}
    # 8 units of 20 ms: one worker's last unit waits ~160 ms from due, eight finish in ~20 ms.
    assert not by_n[1].clean and by_n[8].clean
    assert summary.best_clean.n == 8 and summary.recommended.n == 8


def test_the_sweep_command_refuses_modes_and_needs_a_knob(capsys):
    from harness.cli import main

    assert main(["sweep", "calibrate", "--modes", "serial", "--vary", "workers=1..4"]) == 2
    assert "builds its own modes" in capsys.readouterr().err
    assert main(["sweep", "calibrate"]) == 2
    assert "--vary" in capsys.readouterr().err


def test_a_fit_through_three_points_prints_no_intervals_it_cannot_have():
    from harness.report.sweep import fit_text

    three = summarize_series([_point(1, 96.0), _point(2, 190.7), _point(4, 373.2)])
    text = "\n".join(fit_text(three, "workers"))
    assert "nan" not in text and "no intervals: as many points as parameters" in text
    four = summarize_series([_point(n, float(usl(np.array([n]), 100, 0.1, 0.001)[0]) * f)
                             for n, f in ((1, 1.0), (2, 1.01), (4, 0.99), (8, 1.0))])
    assert "(95 % CI)" in "\n".join(fit_text(four, "workers"))
