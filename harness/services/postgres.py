"""PostgreSQL for the scenarios: the user's DATABASE_URL, else an embedded server (pgserver).

The embedded server lives under the project's ``.harness/pg`` (pgserver, when run as root, runs
postgres as system user ``pgserver`` and widens permissions on every parent of its data folder, so
it must stay inside the project), listens on a Unix socket only, and is stopped by ``stop()`` so a
``make bench`` leaves no server behind.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from harness.services.errors import ServiceError
from harness.services.pg_process import (_is_postgres, _is_postmaster_of, _live_handles,
                                         _running, _running_pid, _wait_gone, live_postmaster,
                                         release_embedded, stop_postmaster)

CONNECT_TIMEOUT_S = 5
KEY_SETTINGS = (
    "max_connections",
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "work_mem",
    "max_wal_size",
)
# libpq messages that mean "nobody answered", as opposed to "a server answered and said no".
_UNREACHABLE = (
    ("connection refused", "connection refused"),
    ("timeout expired", f"no answer within {CONNECT_TIMEOUT_S} s"),
    ("timed out", f"no answer within {CONNECT_TIMEOUT_S} s"),
    ("no such file or directory", "no server socket there"),
    ("could not translate host name", "unknown host name"),
    ("network is unreachable", "network unreachable"),
    ("no route to host", "no route to host"),
    ("server closed the connection unexpectedly", "server closed the connection"),
    ("the database system is starting up", "the server is still starting up"),
    ("the database system is shutting down", "the server is shutting down"),
)
_DATABASE_URL_HINT = "start it or unset DATABASE_URL to use the embedded server"
_GENERIC_HINT = "check that the server is running and the DSN points at it"

# Per embedded data folder: [pgserver server object, how many PostgresService objects of this
# process use it]. pgserver keeps one server object per folder and process, so the last user, not
# the first, may stop it, and it must stop the current object (a crash may have replaced it).
_embedded: dict[Path, list[Any]] = {}
# pgserver's start lock is a fasteners InterProcessLock (fcntl): it keeps processes apart,
# not two threads of one process (a test restarting the server while the runner's health
# check revives it), so starts in this process also take this one.
_start_lock = threading.RLock()
ADOPT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PostgresInfo:
    """What the harness knows about the server a run used (recorded with the run's metadata)."""

    dsn: str
    version: str
    settings: dict[str, str]
    pids: tuple[int, ...]
    embedded: bool
    source: str


def project_root() -> Path:
    """The source checkout holding this package (pyproject.toml beside it), else the cwd."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def default_data_dir() -> Path:
    """Where the embedded server keeps its data: ``<project root>/.harness/pg``."""
    return project_root() / ".harness" / "pg"


def _where(dsn: str) -> str:
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    host = params.get("host") or os.environ.get("PGHOST") or "the default socket"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    return f"{host}:{port}"


def _connect_error(dsn: str, exc: Exception, hint: str) -> ServiceError:
    text = str(exc)
    low = text.lower()
    for needle, label in _UNREACHABLE:
        if needle in low:
            return ServiceError(f"PostgreSQL at {_where(dsn)} does not answer ({label}); {hint}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    # libpq's first line reads 'connection to server at "h" (ip), port p failed: FATAL:  ...'.
    detail = " ".join(first.rsplit("failed:", 1)[-1].replace("FATAL:", "").split())
    return ServiceError(
        f"PostgreSQL at {_where(dsn)} refused the connection ({detail}); "
        "check the user, password and database in the DSN"
    )


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """``psycopg.connect`` that never hangs (connect_timeout=5 unless given) and turns a failed
    connection into a one-line ServiceError."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise _connect_error(dsn, exc, _GENERIC_HINT) from exc


async def aconnect(dsn: str, **kwargs: Any) -> psycopg.AsyncConnection:
    """Async twin of :func:`connect`."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    try:
        return await psycopg.AsyncConnection.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise _connect_error(dsn, exc, _GENERIC_HINT) from exc


def create_schema(dsn: str, name: str) -> None:
    """Create schema ``name`` if it does not exist (one per benchmark cell keeps cells apart)."""
    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))


def drop_schema(dsn: str, name: str) -> None:
    """Drop schema ``name`` and everything in it, if it exists."""
    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


__all__ = ["PostgresInfo", "PostgresService", "aconnect", "connect", "create_schema",
           "drop_schema", "live_postmaster", "release_embedded", "stop_postmaster"]


def _local_postmaster(conn: psycopg.Connection, connected_at: float) -> tuple[int, ...]:
    """The postmaster's pid when the server is a process on this machine, else ().

    A backend is forked by the postmaster for our connection, so its parent is the postmaster. The
    name and start-time checks reject a same-numbered pid from another pid namespace (Docker).
    """
    try:
        backend = psutil.Process(conn.info.backend_pid)
        if _is_postgres(backend) and backend.create_time() >= connected_at - 2.0:
            parent = backend.parent()
            if parent is not None and _is_postgres(parent):
                return (parent.pid,)
    except psutil.Error:
        pass
    try:  # Fallback: postmaster.pid, readable when we run as the server's owner or root.
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        if _is_postmaster_of(pid, data_dir):
            return (pid,)
    except (psycopg.Error, OSError, ValueError, IndexError, TypeError):
        pass
    return ()


def _describe(dsn: str, hint: str, *, embedded: bool, source: str, pids: tuple[int, ...] | None) -> PostgresInfo:
    connected_at = time.time()
    try:
        conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    except psycopg.OperationalError as exc:
        raise _connect_error(dsn, exc, hint) from None
    with conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", [list(KEY_SETTINGS)]
        ).fetchall()
        if pids is None:
            pids = _local_postmaster(conn, connected_at)
    return PostgresInfo(dsn=dsn, version=version, settings=dict(rows), pids=pids, embedded=embedded, source=source)


def _pgserver():
    """Import pgserver lazily (it pulls platformdirs/fasteners and warns about XDG_RUNTIME_DIR)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            import pgserver._commands as commands
            from pgserver.postgres_server import PostgresServer
    except ImportError as exc:  # pragma: no cover - pgserver is a core dependency
        raise ServiceError(
            f"embedded PostgreSQL needs pgserver ({exc}); pip install pgserver, or set DATABASE_URL"
        ) from exc
    return pgserver, commands, PostgresServer


def _clear_stale_state(data_dir: Path) -> None:
    """Repair what a crashed previous run can leave behind, which pgserver does not handle.

    pgserver trusts postmaster.pid when *any* process has that pid (a reused pid, or a zombie),
    and only stops the server when no other pid is listed in .handle_pids.json, so a dead
    process's entry would keep the server running forever.
    """
    pidfile = data_dir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    if pidfile.exists() and (pid is None or not _is_postmaster_of(pid, data_dir)):
        pidfile.unlink(missing_ok=True)
        for lock in data_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
    handles = data_dir / ".handle_pids.json"
    try:
        listed = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [p for p in listed if isinstance(p, int) and psutil.pid_exists(p) and _running(psutil.Process(p))]
    if alive != listed:
        handles.write_text(json.dumps(alive))


class PostgresService:
    """Provides the PostgreSQL a run uses: ``DATABASE_URL`` if set, else the embedded server.

    ``database_url=None`` reads the DATABASE_URL environment variable; ``""`` forces the embedded
    server. ``data_dir`` (embedded only) defaults to ``<project root>/.harness/pg``.
    """

    def __init__(self, database_url: str | None = None, data_dir: Path | None = None) -> None:
        url = database_url if database_url is not None else os.environ.get("DATABASE_URL")
        self.database_url: str | None = url or None
        self.data_dir = Path(data_dir if data_dir is not None else default_data_dir()).expanduser().resolve()
        self._info: PostgresInfo | None = None

    @property
    def info(self) -> PostgresInfo | None:
        """The running server's description, or None before start() / after stop()."""
        return self._info

    def _source(self) -> str:
        try:
            shown = self.data_dir.relative_to(project_root())
        except ValueError:
            shown = self.data_dir
        return f"embedded (pgserver) at {shown}"

    def start(self) -> PostgresInfo:
        """Make sure the server answers and describe it; idempotent, never hangs."""
        if self._info is not None:
            return self._info
        if self.database_url:
            self._info = _describe(self.database_url, _DATABASE_URL_HINT, embedded=False, source="DATABASE_URL", pids=None)
            return self._info
        pgserver, _, server_cls = _pgserver()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with _start_lock, server_cls._lock:
            if self.data_dir.exists():
                _clear_stale_state(self.data_dir)
            cached = server_cls._instances.get(self.data_dir)
            if cached is not None and not _is_postmaster_of(cached.get_pid(), self.data_dir):
                # Our own earlier handle whose postmaster died (killed, crashed): start afresh.
                server_cls._instances.pop(self.data_dir, None)
        try:
            server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        except Exception as exc:
            raise ServiceError(
                f"embedded PostgreSQL (pgserver) did not start in {self.data_dir} ({type(exc).__name__}: {exc}); "
                f"read {self.data_dir / 'log'}, delete {self.data_dir} to start afresh, or set DATABASE_URL"
            ) from exc
        entry = _embedded.setdefault(self.data_dir, [server, 0])
        entry[0] = server
        entry[1] += 1
        self._info = self._describe_embedded()
        return self._info

    def _describe_embedded(self) -> PostgresInfo:
        server = _embedded[self.data_dir][0]
        hint = f"read {self.data_dir / 'log'} or delete {self.data_dir} to start afresh"
        pid = live_postmaster(self.data_dir) or server.get_pid()
        return _describe(server.get_uri(), hint, embedded=True, source=self._source(), pids=(pid,))

    def stop(self) -> None:
        """Stop the embedded server (never a DATABASE_URL one); idempotent.

        pgserver leaves the server running while another live process still holds a handle on the
        same data folder (two test sessions); the last one out stops it.
        """
        info, self._info = self._info, None
        entry = _embedded.get(self.data_dir)
        if info is None or not info.embedded or entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _embedded[self.data_dir]
        server, pid = entry[0], entry[0].get_pid()
        _, _, server_cls = _pgserver()
        try:
            server.cleanup()
        except Exception as exc:
            raise ServiceError(f"embedded PostgreSQL in {self.data_dir} did not stop cleanly ({exc}); kill pid {pid}") from exc
        finally:
            server_cls._instances.pop(self.data_dir, None)
        if not _live_handles(self.data_dir, exclude=os.getpid()):
            # Nobody else uses it: stop whatever postmaster the pid file names now, which
            # is not pgserver's when the server was restarted from outside meanwhile.
            stop_postmaster(self.data_dir)
            _wait_gone((pid,), timeout=10.0)

    def alive(self) -> bool | None:
        """Cheap liveness (no connection): the embedded postmaster named by the pid file is
        running; for DATABASE_URL, its local postmaster pid if known, else None (unknown)."""
        info = self._info
        if info is None:
            return False
        if info.embedded:
            return live_postmaster(self.data_dir) is not None
        if info.pids:
            return any(_running_pid(p) for p in info.pids)
        return None

    def answers(self) -> str | None:
        """None when the server accepts a connection and a query, else why not (one line)."""
        if self._info is None:
            return "not started"
        try:
            with psycopg.connect(self._info.dsn, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return str(_connect_error(self._info.dsn, exc, _GENERIC_HINT))
        if self._info.embedded and live_postmaster(self.data_dir) not in self._info.pids:
            self._info = self._describe_embedded()  # restarted from outside: follow its pid
        return None

    def revive(self) -> PostgresInfo:
        """Start the embedded server again after it died (same data folder, same DSN)."""
        if self._info is None or not self._info.embedded:
            raise ServiceError("only the embedded server can be restarted by the harness")
        _, _, server_cls = _pgserver()
        server = _embedded[self.data_dir][0]
        with _start_lock, server_cls._lock:
            _clear_stale_state(self.data_dir)
            try:
                server.ensure_postgres_running()
            except Exception:
                # Someone else started it meanwhile (an operator's pg_ctl): pg_ctl then
                # fails on the lock file. Take theirs once it answers, as answers() would.
                if not self._answering_postmaster(ADOPT_TIMEOUT_S):
                    raise
        self._info = self._describe_embedded()
        return self._info

    def _answering_postmaster(self, timeout: float) -> bool:
        """True once a live postmaster of our data folder answers (within timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if live_postmaster(self.data_dir) is not None and self.answers() is None:
                return True
            time.sleep(0.1)  # still starting up
        return False

    def restart(self) -> None:
        """Stop and start the embedded postmaster (open connections break); the DSN stays the same."""
        if self._info is None or not self._info.embedded:
            raise ServiceError("restart() only works on a started embedded server; unset DATABASE_URL and call start() first")
        _, commands, server_cls = _pgserver()
        server = _embedded[self.data_dir][0]
        with _start_lock, server_cls._lock:
            commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=server.system_user, timeout=30)
            _wait_gone((server.get_pid(),), timeout=10.0)
            server.ensure_postgres_running()  # same data folder -> same socket folder -> same DSN
        self._info = self._describe_embedded()

    def __enter__(self) -> PostgresService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
