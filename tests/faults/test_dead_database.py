"""A server the harness cannot restart (DATABASE_URL) that is down: every remaining cell is
service-down at once (none waits 30 s in reset), none enters a median, and the run exits 3."""

from __future__ import annotations

import time

import pytest

from harness.analysis.verdict import analyze
from harness.commands.run import run_exit_code
from harness.services.postgres import PostgresService
from tests.faults.faultrun import SCENARIO, record
from tests.faults.test_secrets import URL, _server_answers
from tests.runhelp import run_scenario


@pytest.mark.skipif(not _server_answers(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_a_dead_database_url_marks_the_remaining_cells_service_down(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", URL)
    checks = []

    def answers(self):  # up for the run's start, down from the first cell's check on
        checks.append(1)
        return "PostgreSQL at 127.0.0.1:5432 does not answer (connection refused)"

    monkeypatch.setattr(PostgresService, "answers", answers)
    started = time.monotonic()
    run = run_scenario(tmp_path, str(SCENARIO), ["serial", "threads"],
                       {"units": 10, "cost_ms": 5, "use": "postgres"}, repeat=2)
    elapsed = time.monotonic() - started
    analysis = analyze(run)
    code = run_exit_code(analysis.table, analysis.verdict)
    record("database down (DATABASE_URL)", f"exit {code}; "
           f"{sum(c['status'] == 'service-down' for c in run.cells)} of {len(run.cells)} cells "
           "service-down", 0, [])
    assert [c["status"] for c in run.cells] == ["service-down"] * 4
    assert all(c["censored"] and c["makespan_s"] is None for c in run.cells)
    assert all(u["status"] == "not-run" and u["error_class"] == "ServiceDown"
               for units in run.units.values() for u in units)
    assert [e["event"] for e in run.run["events"]] == ["down"]  # once, not per cell
    assert len(checks) <= 2 and elapsed < 25  # before the first cell, and at the end
    assert analysis.table["speedup"].isna().all()
    assert code == 3
