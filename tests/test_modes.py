"""Every registered mode on calibrate: makespans against the exact theoretical value."""

from __future__ import annotations

from collections import defaultdict

import pytest

from harness.modes import all_modes
from tests.runhelp import run_scenario

# I/O-like units of 50 ms: long enough that dispatch overhead is small next to them.
IO_PARAMS = {"units": 32, "groups": 4, "cost_ms": 50}
TOLERANCE = {"serial": 0.05, "threads": 0.15, "asyncio": 0.15, "grouped": 0.15}


@pytest.mark.parametrize("mode", list(all_modes()))
def test_mode_matches_theory_on_io_units(tmp_path, mode):
    if not all_modes()[mode]().available()[0]:
        pytest.skip(f"{mode} unavailable: {all_modes()[mode]().available()[1]}")
    run = run_scenario(tmp_path, "calibrate", [mode], IO_PARAMS, workers={"*": 8})
    (cell,) = run.cells
    assert cell["status"] == "ok", cell["message"]
    assert all(check["ok"] for check in cell["verify"]), cell["verify"]
    assert cell["units_ok"] == IO_PARAMS["units"]
    makespan, bound = cell["makespan_s"], cell["bound_s"]
    # A measurement faster than its theoretical bound would be a bug in the harness.
    assert makespan >= bound * 0.99, (makespan, bound)
    if mode in TOLERANCE:
        assert makespan <= bound * (1 + TOLERANCE[mode]), (makespan, bound)
    durations = [(u["end_ns"] - u["start_ns"]) / 1e6 for u in run.units[cell["cell_id"]]]
    assert min(durations) >= IO_PARAMS["cost_ms"] * 0.99


def test_cpu_units_show_the_gil(tmp_path):
    """CPU-like units: threads get no speedup (GIL), so their bound is the serial sum."""
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads"],
                       {"units": 20, "cost_ms": 20, "kind": "cpu"}, workers={"*": 4})
    serial, threads = run.cells
    assert threads["bound_s"] == pytest.approx(serial["bound_s"])
    assert threads["makespan_s"] >= serial["makespan_s"] * 0.9


def test_grouped_cap_never_exceeded(tmp_path):
    params = {"units": 40, "groups": 2, "cost_ms": 30}
    run = run_scenario(tmp_path, "calibrate", ["grouped"], params, workers={"*": 8},
                       group_cap=2, stagger_s=0.1)
    (cell,) = run.cells
    events = defaultdict(list)
    for u in run.units[cell["cell_id"]]:
        events[u["group"]] += [(u["start_ns"], 1), (u["end_ns"], -1)]
    peak = {}
    for group, evs in events.items():
        running = best = 0
        for _, delta in sorted(evs, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
            running += delta
            best = max(best, running)
        peak[group] = best
    assert max(peak.values()) == 2  # the cap was reached ...
    assert all(p <= 2 for p in peak.values())  # ... and never exceeded
    # Staggered starts: the second group's first unit starts >= 100 ms after t0.
    first = {g: min(s for s, d in evs if d == 1) for g, evs in events.items()}
    assert sorted(first.values())[1] >= 100e6


@pytest.mark.parametrize("mode", ["serial", "threads", "processes"])
def test_on_error_stop_halts_and_records_the_rest_as_not_run(tmp_path, mode):
    params = {"units": 30, "cost_ms": 5, "fail_every": 4}
    run = run_scenario(tmp_path, "calibrate", [mode], params, workers={"*": 2}, on_error="stop")
    (cell,) = run.cells
    units = run.units[cell["cell_id"]]
    assert len(units) == 30  # every unit has a record
    statuses = [u["status"] for u in units]
    assert statuses.count("error") >= 1
    assert statuses.count("not-run") >= 10
    if mode == "serial":
        # A sequential pipeline fails cleanly: 3 ok, the 4th fails, the rest never run.
        ordered = sorted(units, key=lambda u: u["unit"])
        assert [u["status"] for u in ordered[:4]] == ["ok", "ok", "ok", "error"]
        assert {u["status"] for u in ordered[4:]} == {"not-run"}


def test_on_error_continue_records_each_failure_with_its_class(tmp_path):
    run = run_scenario(tmp_path, "calibrate", ["threads"], {"units": 20, "cost_ms": 1,
                                                           "fail_every": 5})
    (cell,) = run.cells
    errors = [u for u in run.units[cell["cell_id"]] if u["status"] == "error"]
    assert len(errors) == 4
    assert {e["error_class"] for e in errors} == {"RuntimeError"}
    assert all("injected failure" in e["error"] for e in errors)
    assert cell["units_ok"] == 16
