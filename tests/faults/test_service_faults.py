"""Faults of the services a run uses: the embedded PostgreSQL restarted from outside and
killed, the FUSE volume's daemon killed, the supplier server killed. A dead service is
restarted before the next cell (an event in run.json) and the cell it died in is
``service-down`` (censored): no unit spends its retry budget, no cell waits 30 s."""

from __future__ import annotations

import os
import signal

import pytest

from harness.records import load_run
from harness.services.postgres import live_postmaster
from harness.services.nas import fuse_available
from tests.faults.faultrun import STATE, FaultRun, lost, record, wait_for

PARAMS = {"units": 60, "cost_ms": 40}
FUSE, FUSE_WHY = fuse_available()


def _outcome(run: FaultRun, fault: str, before: dict[str, str], schemas: bool = False):
    data = load_run(run.run_dir)
    cells = {c["index"]: c for c in data.cells}
    left = run.leftovers(schemas=schemas)
    records_lost = lost(before, data.units[cells[0]["cell_id"]])
    record(fault, f"exit {run.rc}; cell {cells[0]['status']}; "
           f"{len(data.run.get('events') or [])} service event(s)", records_lost, left)
    return data, cells, records_lost, left


def _service_pid(run: FaultRun, needle: str) -> int:
    return wait_for(lambda: run.processes(needle), 30, needle)[0].pid


def test_postgres_restarted_from_outside(tmp_path):
    import pgserver._commands as commands
    from pgserver.postgres_server import PostgresServer

    run = FaultRun(tmp_path, "serial,threads", {**PARAMS, "use": "postgres"})
    before = run.wait_running(0)
    old = live_postmaster(STATE / "pg")
    user = "pgserver" if os.geteuid() == 0 else None
    commands.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=STATE / "pg", user=user, timeout=60)
    new = live_postmaster(STATE / "pg")
    assert new and new != old and PostgresServer  # a new postmaster the harness never started
    run.wait()
    data, cells, records_lost, left = _outcome(run, "postgres restart", before, schemas=True)
    assert run.rc == 0, run.output  # the threads cell, all after the restart, passed
    assert cells[0]["status"] in ("ok", "service-down")
    assert cells[1]["status"] == "ok"
    assert ("postgres", "restarted from outside") in [(e["service"], e["event"])
                                                      for e in data.run["events"]]
    assert records_lost == 0
    assert not left  # the restarted server is found through its pid file and stopped


def test_postgres_killed(tmp_path):
    run = FaultRun(tmp_path, "serial,threads", {**PARAMS, "use": "postgres"})
    before = run.wait_running(0)
    os.kill(live_postmaster(STATE / "pg"), signal.SIGKILL)
    run.wait()
    data, cells, records_lost, left = _outcome(run, "postgres kill", before, schemas=True)
    assert run.rc == 0, run.output
    assert cells[0]["status"] == "service-down" and cells[0]["censored"]
    assert cells[1]["status"] == "ok"  # restarted before it: an event, not a failure
    events = data.run["events"]
    assert [(e["service"], e["event"]) for e in events] == [("postgres", "restarted")]
    # Cut short within the grace period, not after a 30 s reset nor a retry budget.
    assert cells[0]["process_wall_s"] < 20
    assert records_lost == 0
    assert not left


@pytest.mark.skipif(not FUSE, reason=f"FUSE unavailable: {FUSE_WHY}")
def test_fuse_daemon_killed(tmp_path):
    run = FaultRun(tmp_path, "serial,threads", {**PARAMS, "use": "nas"})
    before = run.wait_running(0)
    os.kill(_service_pid(run, "harness.services.nas"), signal.SIGKILL)
    run.wait()
    data, cells, records_lost, left = _outcome(run, "FUSE daemon kill", before)
    assert run.rc == 0, run.output
    assert cells[0]["status"] == "service-down" and cells[0]["censored"]  # never "ok"
    assert cells[1]["status"] == "ok" and cells[1]["units_ok"] == PARAMS["units"]
    assert [(e["service"], e["event"]) for e in data.run["events"]] == [("nas", "restarted")]
    assert records_lost == 0
    assert not left


def test_supplier_server_killed(tmp_path):
    run = FaultRun(tmp_path, "serial,threads", {**PARAMS, "use": "suppliers"})
    before = run.wait_running(0)
    os.kill(_service_pid(run, "harness.services.suppliers"), signal.SIGKILL)
    run.wait()
    data, cells, records_lost, left = _outcome(run, "supplier server kill", before)
    assert run.rc == 0, run.output
    assert cells[0]["status"] == "service-down" and cells[0]["censored"]
    assert cells[0]["process_wall_s"] < 20
    assert cells[1]["status"] == "ok" and cells[1]["units_ok"] == PARAMS["units"]
    assert [(e["service"], e["event"]) for e in data.run["events"]] == \
        [("suppliers", "restarted")]
    assert records_lost == 0
    assert not left
