"""PostgreSQL observed from its own side while a cell runs: the ``db`` sample series.

:class:`PgStatsSampler` runs on a thread of the parent with an autocommit connection of
its own (application_name ``harness-observer``, left out of every session count) and
samples about twice a second: the cumulative ``pg_stat_database`` counters of the
current database (commits, rollbacks, deadlocks, conflicts, blocks read/hit, temp bytes,
tuples inserted/updated/deleted), client sessions in the database (``connections``),
those waiting on a lock (``lock_waits``) and running a statement (``active``), and
``max_connections``. Analysis takes per-cell deltas and peaks from these raw samples.

Timeliness (PostgreSQL 15+, shared-memory statistics): a backend publishes its counters
when it goes idle, at most once a second (else up to 10 s later), and always when it
exits, before it leaves ``pg_stat_activity``. So ``stop()`` first waits (up to
``settle_s``) for the sessions opened during the cell to end, then takes the last
sample: every deadlock and commit of the cell is in it. Every observer query calls
``pg_stat_force_next_flush()`` so the observer's own transactions are published at once
and counted exactly in ``own_xacts`` (analysis subtracts them from the commits). Before
PostgreSQL 15 the counters lag by up to half a second and ``own_xacts`` is approximate.

The observer never raises into the runner: a database that goes away (a restart
mid-cell) yields ``{"db_up": 0}`` samples and a quiet reconnect.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Callable

import psycopg

OBSERVER_APP = "harness-observer"
CONNECT_TIMEOUT_S = 2  # short: stop() must not hang on a database that went away
COUNTERS = ("xact_commit", "xact_rollback", "deadlocks", "conflicts", "blks_read",
            "blks_hit", "temp_bytes", "tup_inserted", "tup_updated", "tup_deleted")
GAUGES = ("connections", "lock_waits", "active", "max_connections")

# Client sessions of this database other than observers (ours and any other harness's).
_SESSIONS = ("FROM pg_stat_activity WHERE datid = d.datid AND backend_type = 'client backend' "
             "AND pid <> pg_backend_pid() AND application_name <> %(app)s")
_SAMPLE = (
    "SELECT {counters}, a.connections, a.lock_waits, a.active, "
    "current_setting('max_connections')::int, clock_timestamp(){flush} "
    "FROM pg_stat_database d CROSS JOIN LATERAL ("
    "SELECT count(*) AS connections, "
    "count(*) FILTER (WHERE wait_event_type = 'Lock') AS lock_waits, "
    "count(*) FILTER (WHERE state = 'active') AS active " + _SESSIONS + ") a "
    "WHERE d.datname = current_database()")
_LINGERING = ("SELECT (SELECT count(*) " + _SESSIONS + " AND backend_start > %(since)s){flush} "
              "FROM pg_stat_database d WHERE d.datname = current_database()")

OnSample = Callable[[str, int, dict[str, Any]], None]


class PgStatsSampler:
    """Samples PostgreSQL's own statistics at ``hz`` on a thread; series ``"db"``."""

    def __init__(self, dsn: str, hz: float, on_sample: OnSample, settle_s: float = 2.0):
        self.dsn = dsn
        self.interval = 1.0 / hz if hz > 0 else 0.5
        self.on_sample = on_sample
        self.settle_s = settle_s
        self._conn: psycopg.Connection | None = None
        self._flush = False  # pg_stat_force_next_flush() exists (PostgreSQL 15+)
        self._own = 0        # the observer's own transactions so far (startups included)
        self.own_seen = 0
        self._since: datetime | None = None  # server clock at the first sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-pg-stats",
                                        daemon=True)

    # ---- public ----

    def start(self) -> "PgStatsSampler":
        """Take the first sample now (the baseline of every delta), then sample on a thread."""
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling; after the cell's sessions ended (or ``settle_s``), sample once more."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 + CONNECT_TIMEOUT_S)
        self._settle()
        self._sample()
        self._disconnect()

    # ---- internals ----

    def _loop(self) -> None:
        next_tick = time.perf_counter() + self.interval
        while not self._stop.wait(max(0.0, next_tick - time.perf_counter())):
            self._sample()
            next_tick = max(next_tick + self.interval, time.perf_counter())

    def _query(self, text: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One observer transaction; None (and a dropped connection) when the database
        does not answer. Never raises. ``self.own_seen`` is the count of the observer's
        own transactions that the statement's snapshot includes."""
        try:
            if self._conn is None or self._conn.closed:
                self._connect()
            self.own_seen = self._own
            row = self._conn.execute(text.format(counters=", ".join(f"d.{c}" for c in COUNTERS),
                                                 flush=", pg_stat_force_next_flush()"
                                                 if self._flush else ""),
                                     {"app": OBSERVER_APP, **params}).fetchone()
        except Exception:  # a restarting or unreachable database is data, not a crash
            self._disconnect()
            return None
        self._own += 1  # published right away by the forced flush
        return row

    def _connect(self) -> None:
        self._conn = psycopg.connect(self.dsn, autocommit=True, application_name=OBSERVER_APP,
                                     connect_timeout=CONNECT_TIMEOUT_S)
        self._flush = self._conn.info.server_version >= 150000
        self._own += 1  # a backend's startup transaction counts as a commit, published
        # before its first query

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _sample(self) -> None:
        t_ns = time.perf_counter_ns()
        row = self._query(_SAMPLE, {})
        if row is None:
            values: dict[str, Any] = {"db_up": 0}
        else:
            values = {"db_up": 1, **dict(zip(COUNTERS + GAUGES, row)),
                      "own_xacts": self.own_seen}
            if self._since is None:
                self._since = row[len(COUNTERS) + len(GAUGES)]
        try:
            self.on_sample("db", t_ns, values)
        except Exception:
            pass  # the runner's writer failing must not kill the observer thread

    def _settle(self) -> None:
        """Wait until the sessions opened since the first sample have ended: an exiting
        backend publishes its statistics before it leaves pg_stat_activity."""
        if self._since is None:
            return
        deadline = time.perf_counter() + self.settle_s
        while time.perf_counter() < deadline:
            row = self._query(_LINGERING, {"since": self._since})
            if row is None or row[0] == 0:
                return
            time.sleep(0.02)
