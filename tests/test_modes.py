"""Every executor under every dispatch policy on calibrate: one measurement contract.

Parametrized over both registries, so a new executor or policy is tested by adding it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from harness.analysis.verdict import analyze
from harness.executors import all_executors
from harness.policies import all_policies
from tests.runhelp import run_scenario

# I/O-like units of 40 ms in 4 groups: long enough that dispatch overhead is small.
IO_PARAMS = {"units": 24, "groups": 4, "cost_ms": 40}
POLICY_SPECS = {"fifo": "", "interleave": "+interleave", "capped": "+capped(2,50ms)",
                "lanes": "+lanes(1,g00)", "fanout": "+fanout(2,2)", "adaptive": "+adaptive(1,4)"}


def _available(name: str) -> None:
    ok, why = all_executors()[name].available()
    if not ok:
        pytest.skip(f"{name} unavailable: {why}")


def _peak_per_group(units: list[dict]) -> dict[str, int]:
    events = defaultdict(list)
    for u in units:
        if u["status"] != "not-run":
            events[u["group"]] += [(u["start_ns"], 1), (u["end_ns"], -1)]
    peak = {}
    for group, evs in events.items():
        running = best = 0
        for _, delta in sorted(evs, key=lambda e: (e[0], e[1])):  # ends before starts
            running += delta
            best = max(best, running)
        peak[group] = best
    return peak


@pytest.mark.parametrize("executor", list(all_executors()))
def test_every_policy_on_every_executor_keeps_the_contract(tmp_path, executor):
    _available(executor)
    assert set(POLICY_SPECS) == set(all_policies()), "a new policy needs a spec here"
    modes = [executor + spec for spec in POLICY_SPECS.values()]
    run = run_scenario(tmp_path, "calibrate", modes, IO_PARAMS, workers={"*": 4})
    for cell in run.cells:
        assert cell["status"] == "ok", (cell["mode"], cell["message"])
        assert all(check["ok"] for check in cell["verify"]), cell["verify"]
        units = run.units[cell["cell_id"]]
        assert len(units) == IO_PARAMS["units"] and cell["units_ok"] == IO_PARAMS["units"]
        # A batch: every unit is due at t0, whatever the executor or the policy.
        assert {u["due_ns"] for u in units} == {0}
        # The run phase is never faster than theory; set-up and tear-down are apart.
        assert cell["makespan_s"] >= cell["bound_s"], (cell["mode"], cell["makespan_s"])
        assert cell["setup_s"] is not None and cell["teardown_s"] is not None
        assert max(u["end_ns"] for u in units) / 1e9 <= cell["makespan_s"]
        if cell["policy"] == "capped":
            assert max(_peak_per_group(units).values()) <= 2, cell["mode"]
    table = analyze(run).table
    assert (table["efficiency"] <= 1).all(), table[["mode", "efficiency"]]
    assert set(table["harness_errors"]) == {0}


def test_latency_counts_from_due_so_serial_shows_its_queue(tmp_path):
    """In a loop the last unit waited for all the others: its latency is the makespan."""
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads"], IO_PARAMS,
                       workers={"*": 8})
    table = analyze(run).table.set_index("mode")
    serial, threads = table.loc["serial"], table.loc["threads[8]"]
    assert serial["p99_ms"] / 1000 == pytest.approx(serial["wall_s"], rel=0.1)
    assert serial["service_p99_ms"] < serial["p99_ms"] / 5  # one unit's own run is short
    assert threads["p99_ms"] < serial["p99_ms"] / 3


def test_labels_say_executor_workers_and_policy(tmp_path):
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads", "grouped",
                                               "threads+interleave"],
                       {"units": 8, "cost_ms": 1}, workers={"threads": 3, "grouped": 5})
    labels = [c["label"] for c in run.cells]
    # --workers by the spec as written (grouped=5), else by the executor (threads=3).
    assert labels == ["serial", "threads[3]", "threads[5]+capped(3,200ms)",
                      "threads[3]+interleave"]
    simplicity = [c["simplicity"] for c in run.cells]
    assert simplicity[0] < simplicity[1] < simplicity[3] < simplicity[2]


def test_capped_cap_and_stagger_hold(tmp_path):
    params = {"units": 40, "groups": 2, "cost_ms": 30}
    run = run_scenario(tmp_path, "calibrate", ["grouped"], params, workers={"*": 8},
                       group_cap=2, stagger_s=0.1)
    (cell,) = run.cells
    units = run.units[cell["cell_id"]]
    peak = _peak_per_group(units)
    assert max(peak.values()) == 2  # the cap was reached and never exceeded
    first = {g: min(u["start_ns"] for u in units if u["group"] == g) for g in peak}
    assert sorted(first.values())[1] >= 100e6  # the second group started >= 100 ms in


def test_a_unit_raising_inside_the_capped_policy_is_recorded(tmp_path):
    run = run_scenario(tmp_path, "calibrate", ["grouped"],
                       {"units": 12, "groups": 3, "cost_ms": 2, "fail_every": 4},
                       stagger_s=0.01)
    (cell,) = run.cells
    errors = [u for u in run.units[cell["cell_id"]] if u["status"] == "error"]
    assert len(errors) == 3 and cell["units_error"] == 3
    assert {e["error_class"] for e in errors} == {"RuntimeError"}
    assert all("injected failure" in e["error"] for e in errors)
    assert cell["units_not_run"] == 0


def test_a_killed_pool_worker_gives_a_crashed_censored_cell(tmp_path):
    """A worker dies mid-cell (os._exit in the unit): the pool breaks. That is a finding,
    never a result: no 'ok' cell and no efficiency above 1 from the units it never ran."""
    run = run_scenario(tmp_path, "calibrate", ["processes"],
                       {"units": 60, "cost_ms": 20, "crash_at": 10}, workers={"*": 2})
    (cell,) = run.cells
    assert cell["status"] == "crashed", cell
    assert cell["censored"]
    assert "BrokenProcessPool" in cell["message"]
    assert len(run.units[cell["cell_id"]]) == 60  # every unit has a record
    analysis = analyze(run)
    row = analysis.table.iloc[0]
    # No number from a cut-short run: neither an efficiency nor a speedup.
    assert np.isnan(row["efficiency"]) and np.isnan(row["speedup"])
    assert analysis.verdict.status[row["mode"]] == "discarded"


@pytest.mark.parametrize("mode", ["serial", "threads", "processes", "grouped"])
def test_on_error_stop_halts_and_records_the_rest_as_not_run(tmp_path, mode):
    params = {"units": 30, "cost_ms": 5, "fail_every": 4}
    run = run_scenario(tmp_path, "calibrate", [mode], params, workers={"*": 2},
                       on_error="stop", stagger_s=0.0)
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


def test_cpu_units_show_the_gil(tmp_path):
    """CPU-like units: threads get no speedup (GIL), so their bound is the serial sum."""
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads"],
                       {"units": 20, "cost_ms": 20, "kind": "cpu"}, workers={"*": 4})
    serial, threads = run.cells
    assert threads["bound_s"] == pytest.approx(serial["bound_s"])
    # The GIL's floor holds for threads: their CPU-bound run is never shorter than the sum.
    assert threads["makespan_s"] >= threads["bound_s"] and threads["status"] == "ok"


FAST_SCENARIO = '''
import time
from harness.scenario import Check, Unit

def units(ctx):
    return [Unit(f"u{i}") for i in range(5)]

def work(unit, ctx):
    time.sleep(0.01)

def verify(ctx):
    return [Check("ran", 5, 5, True)]

def bound(ctx, executor):
    return 10.0  # a wrong theory: claims 10 s for 50 ms of work
'''


def test_a_run_faster_than_its_bound_is_a_harness_error_never_a_result(tmp_path):
    scenario = tmp_path / "too_fast.py"
    scenario.write_text(FAST_SCENARIO, encoding="utf-8")
    run = run_scenario(tmp_path / "out", str(scenario), ["serial", "threads"], repeat=2)
    assert {c["status"] for c in run.cells} == {"harness-error"}
    assert "below the scenario's bound" in run.cells[0]["message"]
    analysis = analyze(run)
    assert set(analysis.table["harness_errors"]) == {2}
    assert analysis.verdict.recommended is None
    assert set(analysis.verdict.status.values()) == {"discarded"}


def test_a_cell_that_stopped_early_is_not_a_harness_error(tmp_path):
    """The bound assumes every unit ran: stopping at the first failure ends sooner, and
    that is the run's finding, not the harness's error."""
    run = run_scenario(tmp_path, "calibrate", ["serial"],
                       {"units": 20, "cost_ms": 10, "fail_every": 3}, on_error="stop")
    (cell,) = run.cells
    assert cell["status"] == "ok" and cell["units_not_run"] > 0
