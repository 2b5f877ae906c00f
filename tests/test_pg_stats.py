"""The server-side observer (PgStatsSampler) against a real PostgreSQL, the DB columns of the
comparison table, and a database that restarts mid-cell."""

from __future__ import annotations

import os
import threading
import time

import pandas as pd
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from rich.console import Console

from harness.analysis.frames import db_stats
from harness.analysis.table import comparison_table, display_frame
from harness.config import RunConfig
from harness.records import load_run
from harness.runner import PROJECT_ROOT, Runner
from harness.services.pg_stats import PgStatsSampler
from harness.services.postgres import PostgresService

pytestmark = pytest.mark.db

DB_TITLES = ("deadlocks", "rollbacks", "lock-wait peak", "connections peak", "lost updates")


@pytest.fixture
def quiet_db(postgres):
    """A database of its own, so its counters move only with what the test does."""
    name = f"harness_pg_stats_{os.getpid()}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        try:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("needs a role that may create databases")
    yield make_conninfo(postgres.dsn, dbname=name)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def observe(dsn, hz=10.0):
    samples = []
    sampler = PgStatsSampler(dsn, hz, lambda series, t, v: samples.append(
        {"series": series, "t_abs_ns": t, **v}))
    return sampler, samples


def test_counts_exactly_what_the_workload_did(quiet_db):
    # prepare_threshold=None: psycopg's automatic PREPARE costs a transaction of its own.
    opts = {"autocommit": True, "options": "-c deadlock_timeout=10ms", "prepare_threshold": None}
    sampler, samples = observe(quiet_db)
    sampler.start()
    a, b = psycopg.connect(quiet_db, **opts), psycopg.connect(quiet_db, **opts)  # 2 startups
    a.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
    a.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
    for _ in range(5):
        a.execute("SELECT 1")  # 2 + 5 commits
    for _ in range(2):
        with a.transaction():
            a.execute("SELECT 1")
            raise psycopg.Rollback()  # 2 rollbacks
    # A deadlock: a locks 1 then wants 2, b locks 2 then wants 1; one of them is aborted,
    # and tries once more outside a transaction: it waits for the survivor's locks.
    outcomes = []

    def second_lock(conn, first, second):
        try:
            with conn.transaction():
                conn.execute("UPDATE t SET n = n + 1 WHERE id = %s", (first,))
                barrier.wait()
                conn.execute("UPDATE t SET n = n + 1 WHERE id = %s", (second,))
                # Hold both locks until the observer has recorded the victim's retry
                # waiting on them (a condition, not a time: a loaded machine polls late).
                deadline = time.monotonic() + 20
                while not any(x.get("lock_waits", 0) >= 1 for x in list(samples)) \
                        and time.monotonic() < deadline:
                    time.sleep(0.02)
            outcomes.append("commit")
        except psycopg.errors.DeadlockDetected:
            outcomes.append("deadlock")
            conn.execute("UPDATE t SET n = n + 1 WHERE id = %s", (first,))  # waits, commits

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=second_lock, args=(a, 1, 2)),
               threading.Thread(target=second_lock, args=(b, 2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()
    b.close()
    sampler.stop()
    assert sorted(outcomes) == ["commit", "deadlock"]
    stats = db_stats(pd.DataFrame(samples))
    assert stats["db_deadlocks"] == 1
    assert stats["db_commits"] == 2 + 7 + 2  # startups, statements, survivor and retry
    assert stats["db_rollbacks"] == 2 + 1    # explicit rollbacks, the deadlock's victim
    assert stats["db_lock_wait_peak"] >= 1 and stats["db_connections_peak"] == 2
    assert stats["db_max_connections"] > 0 and stats["db_down_samples"] == 0


def test_never_raises_when_the_database_is_unreachable(tmp_path):
    sampler, samples = observe(f"host={tmp_path / 'no-server'} dbname=x connect_timeout=1")
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert samples and all(s["db_up"] == 0 for s in samples)
    assert db_stats(pd.DataFrame(samples)) == {"db_down_samples": len(samples)}


def test_db_columns_only_in_runs_that_measured_them(tmp_path):
    config = RunConfig(scenario="calibrate", modes=["serial"], repeat=1, warmup=False,
                       params={"units": "4", "cost_ms": "1"}, out=tmp_path, progress=False)
    shown = display_frame(comparison_table(load_run(Runner(config, Console(quiet=True)).run())))
    assert not set(DB_TITLES) & set(shown.columns)


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")),
                    reason="restarts an embedded server; DATABASE_URL is set")
def test_database_restart_mid_cell_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    # An embedded server of this test's own (other sessions share .harness/pg), under the
    # project's .harness/ as pgserver requires; the runner finds it through HARNESS_STATE_DIR.
    state = PROJECT_ROOT / ".harness" / "restart-test"
    monkeypatch.setenv("HARNESS_STATE_DIR", str(state))
    service = PostgresService(database_url="", data_dir=state / "pg")
    service.start()
    first_cell = tmp_path / "counter_update"

    back_ns: list[int] = []

    def restart_mid_cell():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = list(first_cell.glob("*/cells/000-serial-r1/units.jsonl"))
            if done and done[0].stat().st_size > 0:  # units are finishing: the cell runs
                service.restart()
                back_ns.append(time.perf_counter_ns())  # the samples' clock: it answers again
                return
            time.sleep(0.02)

    restarter = threading.Thread(target=restart_mid_cell)
    restarter.start()
    try:
        config = RunConfig(scenario="counter_update", modes=["serial", "threads"], repeat=1,
                           warmup=False, out=tmp_path, progress=False,
                           params={"units": "300", "increments": "3", "strategy": "atomic"})
        data = load_run(Runner(config, Console(quiet=True)).run())
    finally:
        restarter.join()
        service.stop()
    first, second = (data.units[c["cell_id"]] for c in data.cells)
    errors = {u["error_class"] for u in first if u["status"] == "error"}
    assert errors, "the restart broke no unit"
    for name in errors:
        assert issubclass(getattr(psycopg.errors, name.split("[")[0]), psycopg.OperationalError)
    # A restart that keeps the server away for longer than the health watch allows (a
    # loaded machine) cuts the cell short as service-down; either way it is said.
    assert data.cells[0]["status"] in ("ok", "service-down"), data.cells[0]["message"]
    if data.cells[0]["status"] == "service-down":
        assert "postgres" in data.cells[0]["message"]
    assert all(u["status"] == "ok" for u in second)
    assert all(check["ok"] for check in data.cells[1]["verify"])
    db = [s for s in data.samples[data.cells[0]["cell_id"]] if s["series"] == "db"]
    assert back_ns and db[0]["db_up"] == 1
    # The observer reconnects: every sample begun once the server answered again is up
    # (whether the cell ran long enough to take one depends on the load: no time is assumed).
    assert all(s["db_up"] == 1 for s in db if s["t_abs_ns"] >= back_ns[0])
    later = [s for s in data.samples[data.cells[1]["cell_id"]] if s["series"] == "db"]
    assert later and all(s["db_up"] == 1 for s in later)
