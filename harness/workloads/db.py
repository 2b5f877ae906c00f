"""Database plumbing shared by the contention scenarios (counter_update, deadlock_writes,
retry_storm): per-worker connections, transactions written once for sync and async
drivers, retry policies with a budget, and the per-cell schema.

A transaction is a generator function that yields ``(sql, params)`` statements and
receives each statement's first row (or None)::

    def transfer(src, dst, amount):
        yield "UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, src)
        yield "UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst)

:func:`run_unit` executes a unit's transactions on this thread's connection and
:func:`arun_unit` on a connection of this event loop's pool, each transaction retried on
the given SQLSTATEs under a :class:`RetryPolicy`. Retries are counted by SQLSTATE
(``{"40P01": 2}``); a unit that gives up raises :class:`~harness.scenario.UnitFailure`, so
its error class reads e.g. ``DeadlockDetected[40P01]``. Connection errors are never
retried: they are recorded, and the next unit on that worker reconnects.
"""

from __future__ import annotations

import asyncio
import multiprocessing.util
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection, Generator, Iterable, Sequence

import psycopg
from psycopg import sql

from harness.scenario import Context, Param, UnitFailure, UnitResult
from harness.services.errors import ServiceError
from harness.services.postgres import CONNECT_TIMEOUT_S, connect

WORKLOAD_APP = "harness-workload"  # application_name of workload sessions
RETRY_KINDS = ("none", "fixed", "exponential_jitter")

Statement = tuple[str, Sequence[Any]]
Transaction = Callable[[], Generator[Statement, Any, Any]]


# ---- retry policies ----

@dataclass(frozen=True)
class RetryPolicy:
    """How a unit retries a transaction that failed transiently.

    ``none`` gives up at the first failure; ``fixed`` waits ``base_s`` every time;
    ``exponential_jitter`` waits uniform(0, min(cap_s, base_s * 2**n)) before retry n
    ("full jitter"), so retries of colliding workers spread out instead of colliding
    again. ``budget`` is the most retries one unit may spend.
    """

    kind: str = "exponential_jitter"
    budget: int = 10
    base_s: float = 0.005
    cap_s: float = 0.5

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if self.kind == "fixed":
            return self.base_s
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** retry))


def retry_params(default: str = "exponential_jitter", budget: int = 10,
                 base_ms: float = 5.0) -> tuple[Param, ...]:
    """The ``retry``/``budget``/``base_ms``/``cap_ms`` parameters of a scenario."""
    return (
        Param("retry", default, "retry policy on transient errors", choices=RETRY_KINDS),
        Param("budget", budget, "most retries one unit may spend before giving up", minimum=0),
        Param("base_ms", base_ms, "fixed delay / first backoff step in ms", minimum=0.0),
        Param("cap_ms", 500.0, "exponential_jitter: longest backoff in ms", minimum=0.0),
    )


def policy_from(params: dict[str, Any]) -> RetryPolicy:
    """The RetryPolicy described by a scenario's :func:`retry_params` values."""
    return RetryPolicy(params["retry"], params["budget"], params["base_ms"] / 1000,
                       params["cap_ms"] / 1000)


class Retrier:
    """Counts one unit's attempts and retries and decides whether to try again."""

    def __init__(self, policy: RetryPolicy, retry_on: Collection[str], seed: str):
        self.policy = policy
        self.retry_on = frozenset(retry_on)
        self.rng = random.Random(seed)  # per-unit seed: jitter is reproducible
        self.attempts = 1
        self.retries: dict[str, int] = {}

    def backoff(self, exc: psycopg.Error) -> float:
        """Count a failed attempt; return the delay before the next one, or raise
        UnitFailure when the error is not transient, the policy is ``none`` or the
        budget is spent."""
        state = exc.sqlstate or ""
        used = sum(self.retries.values())
        if state not in self.retry_on or self.policy.kind == "none" or used >= self.policy.budget:
            raise UnitFailure(exc, self.attempts, self.retries) from exc
        self.retries[state] = self.retries.get(state, 0) + 1
        self.attempts += 1
        return self.policy.delay(used, self.rng)


# ---- executing transactions ----

class _Steps:
    """Drives a transaction generator: the next statement for the previous one's row."""

    def __init__(self, txn: Transaction):
        self._gen = txn()
        self.value: Any = None  # what the generator returned

    def next(self, row: Any) -> Statement | None:
        try:
            return self._gen.send(row)
        except StopIteration as stop:
            self.value = stop.value
            return None


def run_transaction(conn: psycopg.Connection, txn: Transaction) -> Any:
    """Execute ``txn``'s statements in one transaction; return the generator's value."""
    steps, row = _Steps(txn), None
    with conn.transaction():
        while (statement := steps.next(row)) is not None:
            cur = conn.execute(*statement)
            row = cur.fetchone() if cur.description else None
    return steps.value


async def arun_transaction(conn: psycopg.AsyncConnection, txn: Transaction) -> Any:
    """Async twin of :func:`run_transaction`."""
    steps, row = _Steps(txn), None
    async with conn.transaction():
        while (statement := steps.next(row)) is not None:
            cur = await conn.execute(*statement)
            row = await cur.fetchone() if cur.description else None
    return steps.value


def run_unit(ctx: Context, transactions: Iterable[Transaction], policy: RetryPolicy,
             retry_on: Collection[str], seed: str, settings: dict[str, str] | None = None,
             on_give_up: Transaction | None = None) -> UnitResult:
    """Run a unit's transactions in order on this worker's connection, each retried
    under ``policy``; ``on_give_up`` (best effort, not retried) records a unit that gave up."""
    retrier = Retrier(policy, retry_on, seed)
    conn = connection(ctx, settings)
    done = 0
    try:
        for txn in transactions:
            while True:
                try:
                    run_transaction(conn, txn)
                    break
                except psycopg.Error as exc:
                    time.sleep(retrier.backoff(exc))  # the policy's backoff, not a stand-in
            done += 1
    except UnitFailure:
        if on_give_up is not None and not conn.broken:
            try:
                run_transaction(conn, on_give_up)
            except psycopg.Error:
                pass  # best effort: verify reports the unit as unaccounted
        raise
    return UnitResult(rows=done, attempts=retrier.attempts, retries=retrier.retries)


async def arun_unit(ctx: Context, transactions: Iterable[Transaction], policy: RetryPolicy,
                    retry_on: Collection[str], seed: str, settings: dict[str, str] | None = None,
                    on_give_up: Transaction | None = None) -> UnitResult:
    """Async twin of :func:`run_unit` on a connection of this event loop's pool."""
    retrier = Retrier(policy, retry_on, seed)
    pool = await async_pool(ctx, settings)
    done = 0
    async with pool.connection() as conn:
        try:
            for txn in transactions:
                while True:
                    try:
                        await arun_transaction(conn, txn)
                        break
                    except psycopg.Error as exc:
                        await asyncio.sleep(retrier.backoff(exc))
                done += 1
        except UnitFailure:
            if on_give_up is not None and not conn.broken:
                try:
                    await arun_transaction(conn, on_give_up)
                except psycopg.Error:
                    pass  # best effort: verify reports the unit as unaccounted
            raise
    return UnitResult(rows=done, attempts=retrier.attempts, retries=retrier.retries)


# ---- connections ----

# Every workload connection of this process, by the cell that opened it: a long-lived
# process (a user's Dask worker) serves many cells, and closing one cell's connections must
# not touch another's.
_open: dict[tuple[str, str], list[psycopg.Connection]] = {}
_open_lock = threading.Lock()
_finalizer: Any = None  # closes every connection at the process's exit, registered once


def _cell_key(ctx: Context) -> tuple[str, str]:
    return ctx.run_id, ctx.cell_id


def connect_kwargs(ctx: Context) -> dict[str, Any]:
    """Keyword arguments of a workload connection: the cell's schema first on the search
    path, autocommit (transactions are explicit), tagged for the observer."""
    return {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": WORKLOAD_APP, "options": f"-c search_path={ctx.schema}"}


def connection(ctx: Context, settings: dict[str, str] | None = None) -> psycopg.Connection:
    """This thread's workload connection (one per thread, so one per worker process in
    processes mode), replaced when the previous one broke (a restarted server)."""
    conn = ctx.resource("conn", lambda: _connect(ctx, settings or {}))
    if conn.broken or conn.closed:
        setattr(ctx.local, "conn", None)
        _forget(ctx, conn)
        conn = ctx.resource("conn", lambda: _connect(ctx, settings or {}))
    return conn


def _connect(ctx: Context, settings: dict[str, str]) -> psycopg.Connection:
    # psycopg.connect, not services.connect: a refused connection stays an
    # OperationalError in the unit records, which is what it is.
    conn = psycopg.connect(ctx.services["postgres"]["dsn"], **connect_kwargs(ctx))
    for name, value in settings.items():
        try:
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        except psycopg.errors.InsufficientPrivilege:
            _not_applied(name, value)
    global _finalizer
    with _open_lock:
        if _finalizer is None:  # first connection of this process: close all cleanly at exit
            _finalizer = multiprocessing.util.Finalize(None, close_worker, exitpriority=10)
        _open.setdefault(_cell_key(ctx), []).append(conn)
    return conn


def _forget(ctx: Context, conn: psycopg.Connection) -> None:
    with _open_lock:
        conns = _open.get(_cell_key(ctx), [])
        if conn in conns:
            conns.remove(conn)
    conn.close()


def open_connections() -> int:
    """How many workload connections this process holds open, over all cells."""
    with _open_lock:
        return sum(not conn.closed for conns in _open.values() for conn in conns)


_warned: set[str] = set()


def _not_applied(name: str, value: str) -> None:
    """Say (once per process, in the cell's stderr.txt) that a session setting the scenario
    relies on did not apply, e.g. deadlock_timeout needs a superuser: the server default
    then shapes what is measured, and the record must show it."""
    if name not in _warned:
        _warned.add(name)
        print(f"harness: {name}={value} not applied (insufficient privilege); the server's "
              "default is in force", file=sys.stderr)


def close_worker(ctx: Context | None = None) -> None:
    """Scenario hook (import it into the scenario): close the workload connections this
    process opened for ``ctx``'s cell (every one when ``ctx`` is None: pool worker
    processes call it so at exit)."""
    with _open_lock:
        if ctx is None:
            conns = [conn for cell in _open.values() for conn in cell]
            _open.clear()
        else:
            conns = _open.pop(_cell_key(ctx), [])
    for conn in conns:
        try:
            conn.close()
        except psycopg.Error:
            pass


async def async_pool(ctx: Context, settings: dict[str, str] | None = None) -> Any:
    """This event loop's connection pool (``ctx.concurrency`` connections), opened once."""
    task = getattr(ctx.local, "pool_task", None)
    if task is None:
        task = asyncio.ensure_future(_open_pool(ctx, settings or {}))
        ctx.local.pool_task = task
    return await task


async def _open_pool(ctx: Context, settings: dict[str, str]) -> Any:
    from psycopg_pool import AsyncConnectionPool

    async def configure(conn: psycopg.AsyncConnection) -> None:
        for name, value in settings.items():
            try:
                await conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            except psycopg.errors.InsufficientPrivilege:
                _not_applied(name, value)

    size = max(1, ctx.concurrency)
    pool = AsyncConnectionPool(ctx.services["postgres"]["dsn"], kwargs=connect_kwargs(ctx),
                               min_size=size, max_size=size, open=False, configure=configure,
                               name=f"{WORKLOAD_APP}-{ctx.cell_id}")
    await pool.open(wait=True, timeout=30)
    return pool


async def aclose_worker(ctx: Context) -> None:
    """Scenario hook (import it into the scenario): close this event loop's pool."""
    task = getattr(ctx.local, "pool_task", None)
    if task is not None:
        ctx.local.pool_task = None
        await (await task).close()




# ---- the per-cell schema (parent side) ----

_kept: dict[str, str] = {}  # scenario -> schema of its last cell, kept until verify ran
PATIENCE_S = 30.0  # a server restarting between cells gets this long to come back


def _parent_connection(ctx: Context, **kwargs: Any) -> psycopg.Connection:
    """A connection for reset/verify/teardown, waiting for a server that is restarting
    (so the run goes on to the next cell); ServiceError when it does not come back."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            return connect(ctx.services["postgres"]["dsn"], autocommit=True, **kwargs)
        except ServiceError as exc:
            if "does not answer" not in str(exc) or time.monotonic() > deadline:
                raise  # refused (credentials) or gone for good: say so now
            time.sleep(0.5)


def fresh_schema(ctx: Context, ddl: str) -> None:
    """Drop the previous cell's schema (its verify has run) and create this cell's with
    ``ddl`` executed inside it."""
    previous = _kept.pop(ctx.scenario, None)
    with _parent_connection(ctx) as conn:
        for name in dict.fromkeys(n for n in (previous, ctx.schema) if n):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ctx.schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(ctx.schema)))
        conn.execute(ddl)
    _kept[ctx.scenario] = ctx.schema


def drop_kept_schema(ctx: Context) -> None:
    """Drop the last cell's schema (``teardown`` calls this)."""
    name = _kept.pop(ctx.scenario, None)
    if name:
        with _parent_connection(ctx) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def query(ctx: Context, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query in the cell's schema (for ``verify``, in the parent)."""
    with _parent_connection(ctx, options=f"-c search_path={ctx.schema}") as conn:
        return conn.execute(text, params).fetchall()
