"""The driver and the policies on their own: arrivals, pacing logic, failures of the
executor itself (not of a unit) recorded per unit."""

from __future__ import annotations

import pytest

from harness.analysis.verdict import analyze
from harness.policies.capped import Capped
from harness.policies.fanout import Fanout
from harness.policies.fifo import Fifo
from harness.policies.interleave import Interleave
from harness.report.plots import limit_plot
from harness.scenario import Unit
from tests.runhelp import run_scenario

SCHEDULED = '''
import time
from harness.scenario import Unit, UnitResult

def units(ctx):
    return [Unit(f"u{i}", "all", i) for i in range(6)]

def schedule(ctx, units):
    return [0.05 * unit.payload for unit in units]  # an open workload: one every 50 ms

def work(unit, ctx):
    time.sleep(0.01)  # a remote call's delay, on purpose
    return UnitResult(rows=1)
'''

UNPICKLABLE = '''
import threading
from harness.scenario import Unit

def units(ctx):
    payload = threading.Lock() if ctx.mode.startswith("processes") else None
    return [Unit("fine", "all", None), Unit("lock", "all", payload), Unit("fine2", "all", None)]

def work(unit, ctx):
    return None
'''


def _units(groups: dict[str, int]) -> list[Unit]:
    return [Unit(f"{g}{i}", g) for g, n in groups.items() for i in range(n)]


def test_fifo_hands_out_in_the_listed_order():
    policy = Fifo(capacity=2)
    for unit in _units({"a": 2, "b": 1}):
        policy.arrive(unit)
    assert [policy.next(0).id for _ in range(3)] == ["a0", "a1", "b0"]
    assert policy.next(0) is None and policy.pending == 0


def test_interleave_round_robins_across_groups():
    policy = Interleave(capacity=8)
    for unit in _units({"a": 3, "b": 2, "c": 1}):
        policy.arrive(unit)
    assert [policy.next(0).id for _ in range(6)] == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_capped_holds_the_cap_the_stagger_and_the_capacity():
    policy = Capped(capacity=3, cap=2, stagger_s=0.1)
    for unit in _units({"a": 3, "b": 3}):
        policy.arrive(unit)
    assert [u.id for u in (policy.next(0), policy.next(0))] == ["a0", "a1"]
    assert policy.next(0) is None  # a is at its cap, b not started yet
    assert policy.wake_at(0) == 100_000_000  # b starts at 100 ms
    assert policy.next(100_000_000).id == "b0"
    assert policy.next(100_000_000) is None  # the executor's capacity (3) is used up
    policy.finished(Unit("a0", "a"))
    assert policy.next(100_000_000).id == "a2"  # round-robin resumes after b
    assert policy.info()["peak_per_group"] == 2
    assert [u.id for u in policy.remaining()] == ["b1", "b2"]


def test_capped_reads_its_arguments_from_the_spec():
    policy = Capped.from_args(["4", "50ms"], {"group_cap": 3, "stagger_s": 0.2}, capacity=8)
    assert (policy.cap, policy.stagger_ns, policy.label()) == (4, 50_000_000, "capped(4,50ms)")
    with pytest.raises(ValueError, match="capped: cap"):
        Capped.from_args(["zero"], {}, capacity=8)


def test_fanout_gives_each_group_worker_its_handlers_and_moves_on_when_done():
    policy = Fanout.from_args(["2", "2"], {}, capacity=100)
    assert policy.label() == "fanout(2,2)"
    for unit in _units({"a": 3, "b": 2, "c": 1}):
        policy.arrive(unit)
    assert [policy.next(0).id for _ in range(4)] == ["a0", "b0", "a1", "b1"]
    assert policy.next(0) is None  # two workers, each at its two handlers; c waits
    for done in ("b0", "b1"):
        policy.finished(Unit(done, "b"))
    assert [policy.next(0).id for _ in range(1)] == ["c0"]  # b's worker took the next group
    policy.finished(Unit("a0", "a"))
    assert policy.next(0).id == "a2"
    assert policy.info()["peak_in_flight"] == 4


def test_fanout_by_default_hands_out_everything_at_once():
    policy = Fanout.from_args([], {}, capacity=10_000)
    for unit in _units({f"s{i:02d}": 500 for i in range(20)}):
        policy.arrive(unit)
    handed = 0
    while policy.next(0) is not None:
        handed += 1
    assert handed == 10_000 and policy.pending == 0


@pytest.mark.parametrize("mode", ["serial", "threads"])
def test_a_declared_schedule_sets_due_and_no_unit_starts_early(tmp_path, mode):
    scenario = tmp_path / "scheduled.py"
    scenario.write_text(SCHEDULED, encoding="utf-8")
    run = run_scenario(tmp_path / "out", str(scenario), [mode])
    (cell,) = run.cells
    units = sorted(run.units[cell["cell_id"]], key=lambda u: u["due_ns"])
    assert [u["due_ns"] for u in units] == [i * 50_000_000 for i in range(6)]
    assert all(u["start_ns"] >= u["due_ns"] for u in units)
    assert cell["makespan_s"] >= 0.25  # the last unit arrives at 250 ms


def test_units_that_cannot_be_pickled_fail_their_cell_with_the_reason(tmp_path):
    """Units travel to the cell's process: an unpicklable payload is the scenario's to
    fix. The cell says so in one line and the next cell still runs."""
    scenario = tmp_path / "unpicklable.py"
    scenario.write_text(UNPICKLABLE, encoding="utf-8")
    run = run_scenario(tmp_path / "out", str(scenario), ["processes", "serial"],
                       workers={"*": 1})
    broken, fine = run.cells
    assert broken["status"] == "crashed" and "cannot be pickled" in broken["message"]
    assert {u["status"] for u in run.units[broken["cell_id"]]} == {"not-run"}
    assert fine["status"] == "ok" and fine["units_ok"] == 3


def test_the_driver_passes_records_to_a_policy_that_sees_them(tmp_path):
    run = run_scenario(tmp_path, "calibrate", ["threads[8]+adaptive(1,4)"],
                       {"units": 24, "groups": 2, "cost_ms": 10})
    (cell,) = run.cells
    assert cell["status"] == "ok" and cell["units_ok"] == 24
    info = cell["info"]
    assert info["limit_events"]["up"] > 0  # outcomes reached the policy: the limit rose
    assert max(limit for _, _, limit in info["limit_trajectory"]) > 1
    assert set(info["limit_final"]) == {"g00", "g01"}
    assert info["shared_trajectory"][0] == [0, 1.0]  # the shared limit: the groups' starts
    plot = limit_plot(analyze(run))  # both trajectories reach the report
    assert plot is not None and plot.title == "Adaptive concurrency limit"
