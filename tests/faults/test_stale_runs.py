"""A run whose harness and keeper were both killed: the next start removes its schemas and
scratch folder, and only those: a live run's stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from harness.runstate import RunEntry, process_started, reap_stale, runs_dir
from tests.faults.faultrun import record
from tests.faults.test_secrets import URL, _server_answers


def _schemas(prefix: str) -> list[str]:
    with psycopg.connect(URL, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix])]


@pytest.mark.skipif(not _server_answers(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_next_start_reaps_only_runs_whose_harness_is_gone(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_started = process_started(dead.pid) or 0.0
    dead.wait()  # a harness that is gone (its pid may be reused: the start time tells)
    entries = {
        "dead": RunEntry("20260101T000000Z-dead01", dead.pid, dead_started,
                         str(tmp_path / "results" / "dead"), str(tmp_path / "work" / "dead"),
                         "faults_dead01_", URL),
        "live": RunEntry("20260101T000000Z-live01", os.getpid(), process_started(os.getpid()),
                         str(tmp_path / "results" / "live"), str(tmp_path / "work" / "live"),
                         "faults_live01_", URL),
    }
    state = tmp_path / "state"
    runs_dir(state).mkdir(parents=True)
    with psycopg.connect(URL, autocommit=True) as conn:
        for name, entry in entries.items():
            folder = tmp_path / "work" / name / "receipts"
            folder.mkdir(parents=True)
            (tmp_path / "results" / name).mkdir(parents=True)
            (tmp_path / "results" / name / "run.json").write_text(json.dumps({"status": "running"}))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{entry.schema_prefix}000_serial_r1"')
            (runs_dir(state) / f"{entry.run_id}.json").write_text(json.dumps(entry.__dict__))
    try:
        reaped = reap_stale(state)
        assert reaped == [entries["dead"].run_id]
        assert _schemas("faults_dead01_") == [] and not (tmp_path / "work" / "dead").exists()
        run = json.loads((tmp_path / "results" / "dead" / "run.json").read_text())
        assert run["status"] == "parent-died"
        # The live run keeps everything.
        assert _schemas("faults_live01_") and (tmp_path / "work" / "live").exists()
        assert (runs_dir(state) / f"{entries['live'].run_id}.json").exists()
        record("harness and keeper killed (next start)", "dead run reaped, live run kept", 0, [])
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "faults_live01_000_serial_r1" CASCADE')
