"""PostgreSQL service: embedded (pgserver) and DATABASE_URL, against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import psutil
import psycopg
import pytest

from harness.services import ServiceError
from harness.services.postgres import KEY_SETTINGS, PostgresService, connect, create_schema, drop_schema

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    service = PostgresService(database_url="", data_dir=tmp_path_factory.mktemp("pg") / "pg")
    service.start()
    yield service
    service.stop()


def _external_url() -> str:
    url = os.environ.get("DATABASE_URL") or LOCAL_URL
    try:
        connect(url).close()
    except ServiceError as exc:
        pytest.skip(f"no external PostgreSQL to test DATABASE_URL with: {exc}")
    return url


def test_embedded_start_describes_the_server(embedded):
    info = embedded.start()  # idempotent: the same description
    assert info is embedded.info and info.embedded
    assert info.source.startswith("embedded (pgserver) at ")
    assert info.version.split(".")[0].isdigit()
    assert set(info.settings) == set(KEY_SETTINGS) and info.settings["fsync"] in ("on", "off")
    assert len(info.pids) == 1 and psutil.Process(info.pids[0]).name() == "postgres"
    with connect(info.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_restart_breaks_old_connections_and_keeps_the_dsn(embedded):
    before = embedded.info
    old = connect(before.dsn, autocommit=True)
    embedded.restart()
    after = embedded.info
    assert after.dsn == before.dsn and after.pids != before.pids
    assert _gone(before.pids[0])
    with pytest.raises(psycopg.OperationalError):
        old.execute("SELECT 1")
    old.close()
    with connect(after.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_schema_helpers(embedded):
    name = f"cell_{uuid.uuid4().hex[:8]}"
    dsn = embedded.info.dsn
    create_schema(dsn, name)
    create_schema(dsn, name)  # IF NOT EXISTS
    with connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{name}".t (x int)')
    drop_schema(dsn, name)  # CASCADE takes the table along
    drop_schema(dsn, name)  # IF EXISTS
    with connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [name]).fetchone() == (0,)


def test_stop_leaves_no_postmaster_and_recovers_from_a_crashed_run(tmp_path):
    data_dir = tmp_path / "pg"
    service = PostgresService(database_url="", data_dir=data_dir)
    pid = service.start().pids[0]
    service.stop()
    service.stop()  # idempotent
    assert _gone(pid) and service.info is None
    # What a crashed run leaves: a postmaster.pid naming a live non-postgres process (pid reuse)
    # and a dead process still listed as holding the server.
    (data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{data_dir}\n0\n5432\n{data_dir}\n\n0 0\nready\n")
    (data_dir / ".handle_pids.json").write_text(json.dumps([_dead_pid()]))
    again = PostgresService(database_url="", data_dir=data_dir)
    info = again.start()
    with connect(info.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    again.stop()
    assert _gone(info.pids[0])  # the dead holder did not keep it running


def test_dead_database_url_fails_fast_with_one_line():
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        PostgresService(database_url="postgresql://postgres@127.0.0.1:1/test").start()
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message
    assert "127.0.0.1:1" in message and "does not answer" in message and "DATABASE_URL" in message


def test_connect_error_is_a_one_line_service_error():
    with pytest.raises(ServiceError) as caught:
        connect("postgresql://postgres@127.0.0.1:1/test")
    assert "\n" not in str(caught.value) and "connection refused" in str(caught.value)


@pytest.mark.db
def test_database_url_is_honoured(monkeypatch):
    url = _external_url()
    monkeypatch.setenv("DATABASE_URL", url)
    service = PostgresService()
    info = service.start()
    assert info.dsn == url and not info.embedded and info.source == "DATABASE_URL"
    assert info.version and set(info.settings) == set(KEY_SETTINGS)
    if info.pids:  # a local server: the pid is its postmaster
        assert psutil.Process(info.pids[0]).name() == "postgres"
    with pytest.raises(ServiceError):
        service.restart()  # embedded only: never restarts someone else's server
    service.stop()  # never stops a DATABASE_URL server either
    with connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.db
def test_session_fixture_answers(postgres):
    with connect(postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert postgres.embedded == (not os.environ.get("DATABASE_URL"))


def test_a_killed_postmaster_is_replaced_and_the_last_user_stops_it(tmp_path):
    first = PostgresService(database_url="", data_dir=tmp_path / "pg")
    dead = first.start().pids[0]
    os.kill(dead, 9)  # pgserver's cached handle still names the dead postmaster
    deadline = time.monotonic() + 5
    while not _gone(dead) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = PostgresService(database_url="", data_dir=tmp_path / "pg")
    info = second.start()
    assert info.pids != (dead,)
    with connect(info.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    second.stop()
    assert not _gone(info.pids[0])  # `first` still uses it
    first.stop()
    assert _gone(info.pids[0])


def _stop_from_outside(service: PostgresService) -> None:
    from harness.services import postgres as pg

    _, commands, _ = pg._pgserver()
    server = pg._embedded[service.data_dir][0]
    commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=service.data_dir,
                    user=server.system_user, timeout=30)


def test_revive_adopts_a_server_someone_else_started_meanwhile(embedded, monkeypatch):
    """An operator's pg_ctl start wins the race: ours then fails on the lock file, and the
    harness takes the server that answers rather than calling the service down."""
    from harness.services import postgres as pg

    _stop_from_outside(embedded)
    server = pg._embedded[embedded.data_dir][0]
    real_start = server.ensure_postgres_running

    def started_by_someone_else() -> None:
        real_start()  # the operator's server comes up first ...
        raise subprocess.CalledProcessError(1, ["pg_ctl", "start"])  # ... and ours fails

    monkeypatch.setattr(server, "ensure_postgres_running", started_by_someone_else)
    info = embedded.revive()
    assert psutil.Process(info.pids[0]).name() == "postgres"
    with connect(info.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_revive_that_cannot_start_the_server_says_so(embedded, monkeypatch):
    from harness.services import postgres as pg

    _stop_from_outside(embedded)
    server = pg._embedded[embedded.data_dir][0]
    real_start = server.ensure_postgres_running
    failure = subprocess.CalledProcessError(1, ["pg_ctl", "start"])
    monkeypatch.setattr(server, "ensure_postgres_running", lambda: (_ for _ in ()).throw(failure))
    monkeypatch.setattr(pg, "ADOPT_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(subprocess.CalledProcessError):
            embedded.revive()  # nobody else started one: the failure stands
    finally:
        monkeypatch.setattr(server, "ensure_postgres_running", real_start)
        embedded.revive()  # the module's other tests share this server
