"""partial_failure against a real PostgreSQL: the state a fault leaves (committed, partial
units, orphans), the recovery run the harness performs through ``recover(ctx)``, and
whether the recorded error names the unit and the record."""

from __future__ import annotations

import pytest

from harness.analysis.frames import cells_frame
from harness.executors import all_executors
from tests.runhelp import run_scenario

pytestmark = pytest.mark.db

SMALL = {"orders": 8, "lines": 4, "fault_at": 3, "fault_line": 2, "step_ms": 1.0}
RECOVERY = ["recovery: units executed again", "recovery: wall time", "recovery: total time",
            "recovery: tables exact"]


def metrics(run, mode):
    cells = cells_frame(run).set_index("mode")
    return {c[len("metric_"):]: cells.loc[mode, c] for c in cells.columns
            if c.startswith("metric_")}


def failed_unit(run, cell):
    return [u for u in run.units[cell["cell_id"]] if u["status"] != "ok"]


@pytest.mark.parametrize("executor", list(all_executors()))
def test_a_poison_record_leaves_a_partial_unit_that_recovery_stitches(postgres, tmp_path,
                                                                      executor):
    ok, why = all_executors()[executor].available()
    if not ok:
        pytest.skip(f"{executor} unavailable: {why}")
    run = run_scenario(tmp_path, "partial_failure", [executor],
                       {**SMALL, "fault": "poison", "atomic": False}, workers={"*": 2})
    (cell,) = run.cells
    assert cell["status"] == "ok" and cell["units_error"] == 1, cell["message"]
    got = metrics(run, executor)
    # The order header and lines 0-1 landed before line 2 failed: 3 orphan rows.
    assert (got["committed"], got["partial_units"], got["orphan_rows"]) == (7, 1, 3)
    assert (got["rework_units"], got["mismatches_after"]) == (1, 0)
    assert [c["name"] for c in cell["verify"]][-4:] == RECOVERY  # appended after verify's
    assert got["total_s"] == pytest.approx(cell["makespan_s"] + got["recovery_s"], abs=2e-3)
    (bad,) = failed_unit(run, cell)  # attribution: the record names the unit and the line
    assert bad["unit"] == "o00003" and bad["error_class"] == "PoisonRecord"
    assert "order o00003 line 2" in bad["error"]


def test_atomic_units_leave_nothing_partial(postgres, tmp_path):
    run = run_scenario(tmp_path, "partial_failure", ["threads"],
                       {**SMALL, "fault": "poison", "atomic": True}, workers={"threads": 4})
    got = metrics(run, "threads")
    assert (got["committed"], got["partial_units"], got["orphan_rows"]) == (7, 0, 0)
    assert (got["rework_units"], got["mismatches_after"]) == (1, 0)


def test_on_error_stop_costs_rework_and_no_checkpoints_redo_everything(postgres, tmp_path):
    params = {**SMALL, "fault": "poison"}
    stop = run_scenario(tmp_path / "stop", "partial_failure", ["serial"], params,
                        on_error="stop")
    go = run_scenario(tmp_path / "go", "partial_failure", ["serial"], params)
    assert metrics(stop, "serial")["rework_units"] == SMALL["orders"] - SMALL["fault_at"]
    assert metrics(go, "serial")["rework_units"] == 1
    blind = run_scenario(tmp_path / "blind", "partial_failure", ["serial"],
                         {**params, "checkpoints": False})
    got = metrics(blind, "serial")
    assert (got["rework_units"], got["mismatches_after"]) == (SMALL["orders"], 0)


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_worker_crash_is_recovered_but_not_attributed_to_its_record(postgres, tmp_path,
                                                                      executor):
    run = run_scenario(tmp_path, "partial_failure", [executor],
                       {**SMALL, "fault": "crash"}, workers={"*": 2})
    (cell,) = run.cells
    assert cell["status"] == "crashed"
    got = metrics(run, executor)
    assert got["committed"] < SMALL["orders"]
    assert got["rework_units"] == SMALL["orders"] - got["committed"]
    assert got["mismatches_after"] == 0
    crashed = {u["unit"]: u for u in failed_unit(run, cell)}
    assert "o00003" in crashed  # recorded, but only as a casualty of the cell
    assert "line 2" not in (crashed["o00003"]["error"] or "")


def test_a_session_ended_mid_write_names_the_server_reason_not_the_unit(postgres, tmp_path):
    run = run_scenario(tmp_path, "partial_failure", ["threads"],
                       {**SMALL, "fault": "db_error"}, workers={"threads": 2})
    (cell,) = run.cells
    (bad,) = failed_unit(run, cell)
    assert bad["unit"] == "o00003" and "57P01" in bad["error_class"]
    assert "o00003" not in bad["error"]
    got = metrics(run, "threads")
    assert (got["partial_units"], got["rework_units"], got["mismatches_after"]) == (1, 1, 0)
