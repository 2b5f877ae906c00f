"""PostgreSQL observed from its own side while a cell runs: the ``db`` sample series.

:class:`PgStatsSampler` runs on a thread of the parent with an autocommit connection of
its own (application_name ``harness-observer``, left out of every session count). About
twice a second it records the cumulative ``pg_stat_database`` counters of the current
database (commits, rollbacks, deadlocks, conflicts, blocks read/hit, temp bytes, tuples
inserted/updated/deleted) and ``max_connections``; in between it polls the sessions
(``poll_hz``) so each sample carries the peaks since the previous one: client sessions
in the database (``connections``), those waiting on a lock (``lock_waits``) and those
running a statement (``active``). A short cell's peaks are not missed between samples.
Analysis takes per-cell deltas and peaks from these raw samples.

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
SESSION_GAUGES = ("connections", "lock_waits", "active")

# Client sessions of this database other than observers (ours and any other harness's).
_SESSIONS = ("FROM pg_stat_activity WHERE datid = d.datid AND backend_type = 'client backend' "
             "AND pid <> pg_backend_pid() AND application_name <> %(app)s")
_GAUGES = ("(SELECT count(*) AS connections, "
           "count(*) FILTER (WHERE wait_event_type = 'Lock') AS lock_waits, "
           "count(*) FILTER (WHERE state = 'active') AS active " + _SESSIONS + ") a")
_SAMPLE = ("SELECT a.connections, a.lock_waits, a.active, {counters}, "
           "current_setting('max_connections')::int, clock_timestamp(){flush} "
           "FROM pg_stat_database d CROSS JOIN LATERAL " + _GAUGES +
           " WHERE d.datname = current_database()")
_POLL = ("SELECT a.connections, a.lock_waits, a.active{flush} FROM pg_stat_database d "
         "CROSS JOIN LATERAL " + _GAUGES + " WHERE d.datname = current_database()")
_LINGERING = ("SELECT (SELECT count(*) " + _SESSIONS + " AND backend_start > %(since)s){flush} "
              "FROM pg_stat_database d WHERE d.datname = current_database()")

OnSample = Callable[[str, int, dict[str, Any]], None]


class PgStatsSampler:
    """Samples PostgreSQL's own statistics at ``hz`` on a thread; series ``"db"``."""

    def __init__(self, dsn: str, hz: float, on_sample: OnSample, settle_s: float = 2.0,
                 poll_hz: float = 10.0):
        self.dsn = dsn
        self.interval = 1.0 / hz if hz > 0 else 0.5
        self.poll_interval = min(self.interval, 1.0 / poll_hz if poll_hz > 0 else self.interval)
        self.on_sample = on_sample
        self.settle_s = settle_s
        self._conn: psycopg.Connection | None = None
        self._sql: dict[str, str] = {}  # the statements as this server version needs them
        self._own = 0        # the observer's own transactions so far (startups included)
        self._own_seen = 0   # ... of which the last statement's snapshot includes
        self._peaks = dict.fromkeys(SESSION_GAUGES, 0)
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
        next_sample = time.perf_counter() + self.interval
        while not self._stop.wait(self.poll_interval):
            if time.perf_counter() >= next_sample:
                self._sample()
                next_sample = max(next_sample + self.interval, time.perf_counter())
            else:
                self._poll()

    def _query(self, text: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One observer transaction; None (and a dropped connection) when the database
        does not answer. Never raises."""
        try:
            if self._conn is None or self._conn.closed:
                self._connect()
            self._own_seen = self._own
            row = self._conn.execute(self._sql[text], {"app": OBSERVER_APP, **params}).fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            # A restarting or unreachable database is data (db_up 0), not a crash; any other
            # error is a bug in these queries and must not pass for a database that is down.
            self._disconnect()
            return None
        self._own += 1  # published right away by the forced flush
        return row

    def _connect(self) -> None:
        self._conn = psycopg.connect(self.dsn, autocommit=True, application_name=OBSERVER_APP,
                                     connect_timeout=CONNECT_TIMEOUT_S)
        # pg_stat_force_next_flush() exists from PostgreSQL 15. The statements depend only on
        # the server version: formatted once per connection, not on every 10 Hz poll.
        flush = (", pg_stat_force_next_flush()" if self._conn.info.server_version >= 150000
                 else "")
        counters = ", ".join(f"d.{c}" for c in COUNTERS)
        self._sql = {text: text.format(counters=counters, flush=flush)
                     for text in (_SAMPLE, _POLL, _LINGERING)}
        # A backend's startup transaction counts as a commit, published before its first query.
        self._own += 1

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _poll(self) -> None:
        row = self._query(_POLL, {})
        if row is not None:
            self._peaks = {g: max(self._peaks[g], v) for g, v in zip(SESSION_GAUGES, row)}

    def _sample(self) -> None:
        t_ns = time.perf_counter_ns()
        row = self._query(_SAMPLE, {})
        if row is None:
            values: dict[str, Any] = {"db_up": 0}
        else:
            n = len(SESSION_GAUGES)
            values = {"db_up": 1,
                      **{g: max(self._peaks[g], v) for g, v in zip(SESSION_GAUGES, row)},
                      **dict(zip(COUNTERS, row[n:])), "max_connections": row[n + len(COUNTERS)],
                      "own_xacts": self._own_seen}
            if self._since is None:
                self._since = row[n + len(COUNTERS) + 1]
        self._peaks = dict.fromkeys(SESSION_GAUGES, 0)
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
