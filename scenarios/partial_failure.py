"""partial_failure: recovery time; a parallel write that partially failed, and stitching it back.

Each unit is one order through a multi-step pipeline: extract the record, transform each
line (``step_ms`` of work per line), and write three related tables in PostgreSQL: the
order, its lines, its inventory adjustments; then a checkpoint row marks the unit done.
With ``atomic=true`` the writes and the checkpoint are one transaction; with
``atomic=false`` every statement commits on its own, as many real pipelines do.

One unit (``fault_at``) meets a fault at its line ``fault_line``, after the order and the
lines before it were written (``--param fault=``):

- ``poison``: a record whose quantity is not a number; the strict transform raises, naming
  the order and the line;
- ``crash``: the worker process dies (``os._exit``), taking the cell's process (serial,
  threads, asyncio) or a pool worker (processes, dask) with every unit in flight;
- ``db_error``: the database ends the session mid-write (``pg_terminate_backend``, as a
  failover does); the error names the server's reason, not the unit;
- ``none``: no fault (the baseline).

``verify`` measures the state at failure: units committed (checkpoints), partially written
units, orphan rows (rows of units without a checkpoint: no foreign keys stop them, as in
many pipelines), and workload sessions still open. Then the harness calls ``recover``: the
recovery run, here in the parent on one connection, timed around the whole of it. It
resumes from the checkpoints (``checkpoints=false``: it cannot tell what finished, so it
wipes and redoes every unit), deletes each unfinished unit's partial rows, and runs it
again with the transient faults gone and the poison line quarantined with its reason.
Then it checks the tables against the orders exactly. Declared metrics: the state at
failure, ``rework_units``, ``recovery_s``, ``total_s`` (the run phase plus recovery) and
``mismatches_after`` (rows that differ from the expected tables after recovery).

No ``bound``: a failure ends units early by design, and which ones depends on the executor.
"""

from __future__ import annotations

import os
import random
import threading
import time
from contextlib import nullcontext
from typing import Any

import psycopg

from harness.scenario import Check, Context, Metric, Param, Unit, UnitResult
from harness.workloads import db

NAME = "partial_failure"
DESCRIPTION = "orders written to three tables, a fault mid-write, and the recovery run"
SERVICES = ("postgres",)
FAULTS = ("none", "poison", "crash", "db_error")
PARAMS = (
    Param("orders", 30, "orders (units)", minimum=1),
    Param("lines", 4, "lines per order", minimum=1),
    Param("fault", "poison", "the fault injected", choices=FAULTS),
    Param("fault_at", 10, "index of the order that meets the fault", minimum=0),
    Param("fault_line", 2, "line of that order at which it strikes", minimum=0),
    Param("atomic", False, "one transaction per unit (else every statement commits)"),
    Param("checkpoints", True, "a checkpoint row per finished unit (recovery resumes)"),
    Param("step_ms", 3.0, "transform work per line, ms", minimum=0.0),
    Param("seed", 1, "seed of the orders"),
)
METRICS = (
    Metric("committed", "units", lower_is_better=False, help="units checkpointed at failure"),
    Metric("partial_units", "units", help="units with some rows written and no checkpoint"),
    Metric("orphan_rows", "rows", help="rows of units without a checkpoint"),
    Metric("open_sessions", "sessions", help="workload sessions still open after the cell"),
    Metric("rework_units", "units", help="units the recovery run executed again"),
    Metric("recovery_s", "s", help="wall time of the recovery run"),
    Metric("total_s", "s", help="run phase plus recovery"),
    Metric("mismatches_after", "rows", help="rows differing from the expected after recovery"),
)
DDL = """
CREATE TABLE orders (id text PRIMARY KEY, customer int NOT NULL);
CREATE TABLE order_lines (order_id text NOT NULL, line int NOT NULL, sku int NOT NULL,
                          qty int NOT NULL, PRIMARY KEY (order_id, line));
CREATE TABLE inventory_adjustments (order_id text NOT NULL, sku int NOT NULL,
                                    delta int NOT NULL, PRIMARY KEY (order_id, sku));
CREATE TABLE checkpoints (order_id text PRIMARY KEY);
CREATE TABLE quarantine (order_id text NOT NULL, line int NOT NULL, reason text NOT NULL);
"""
TABLES = ("orders", "order_lines", "inventory_adjustments")
POISON = "twelve"  # the poison record's quantity


class PoisonRecord(ValueError):
    """A record the strict transform cannot read; the message names the order and line."""


def units(ctx: Context) -> list[Unit]:
    p = ctx.params
    result = []
    for i in range(p["orders"]):
        rng = random.Random(f"{p['seed']}-{i}")
        skus = rng.sample(range(100), p["lines"])
        lines = [(sku, rng.randint(1, 9)) for sku in skus]
        if p["fault"] == "poison" and i == p["fault_at"] and p["fault_line"] < len(lines):
            lines[p["fault_line"]] = (lines[p["fault_line"]][0], POISON)
        # Plain tuples: Dask workers unpickle payloads without importing this file.
        result.append(Unit(id=f"o{i:05d}", group=f"c{i % 4}", payload=(i, rng.randrange(50),
                                                                       tuple(lines))))
    return result


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, DDL)


def _app(ctx: Context) -> str:
    return f"pf:{ctx.schema}"[:63]  # tags this cell's sessions for the open-session count


_conns: list[psycopg.Connection] = []  # every workload connection of this process
_conns_lock = threading.Lock()


def _connection(ctx: Context) -> psycopg.Connection:
    conn = getattr(ctx.local, "pf_conn", None)
    if conn is None or conn.closed or conn.broken:  # a terminated session: reconnect
        conn = psycopg.connect(ctx.services["postgres"]["dsn"],
                               **{**db.connect_kwargs(ctx), "application_name": _app(ctx)})
        ctx.local.pf_conn = conn
        with _conns_lock:
            _conns.append(conn)
    return conn


def close_worker(ctx: Context) -> None:
    """Close every workload connection this process opened (each worker thread has one)."""
    with _conns_lock:
        conns, _conns[:] = list(_conns), []
    for conn in conns:
        conn.close()


def _fault(conn: psycopg.Connection, p: dict[str, Any]) -> None:
    if p["fault"] == "crash":
        os._exit(70)  # the worker dies mid-write, as on a segfault or an OOM kill
    if p["fault"] == "db_error":
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def pipeline(conn: psycopg.Connection, unit: Unit, p: dict[str, Any], recovering: bool) -> int:
    """Extract, transform and write one order; returns the lines written. In recovery the
    transient faults are gone and a poison line is quarantined instead of failing."""
    index, customer, lines = unit.payload
    with conn.transaction() if p["atomic"] else nullcontext():
        conn.execute("INSERT INTO orders VALUES (%s, %s)", (unit.id, customer))
        adjustments: dict[int, int] = {}
        for n, (sku, qty) in enumerate(lines):
            if not recovering and index == p["fault_at"] and n == p["fault_line"]:
                _fault(conn, p)
            time.sleep(p["step_ms"] / 1000)  # transform work
            if not isinstance(qty, int):
                reason = f"order {unit.id} line {n}: quantity {qty!r} is not a number"
                if not recovering:
                    raise PoisonRecord(reason)
                conn.execute("INSERT INTO quarantine VALUES (%s, %s, %s)", (unit.id, n, reason))
                continue
            conn.execute("INSERT INTO order_lines VALUES (%s, %s, %s, %s)",
                         (unit.id, n, sku, qty))
            adjustments[sku] = adjustments.get(sku, 0) - qty
        for sku, delta in adjustments.items():
            conn.execute("INSERT INTO inventory_adjustments VALUES (%s, %s, %s)",
                         (unit.id, sku, delta))
        if p["checkpoints"]:
            conn.execute("INSERT INTO checkpoints VALUES (%s)", (unit.id,))
    return len(adjustments)


def work(unit: Unit, ctx: Context) -> UnitResult:
    return UnitResult(rows=pipeline(_connection(ctx), unit, ctx.params, recovering=False))


# ---- the state at failure ----

def _rows_by_unit(ctx: Context) -> dict[str, int]:
    """Rows in the three tables per order."""
    counts: dict[str, int] = {}
    for table in TABLES:
        key = "id" if table == "orders" else "order_id"
        for order_id, n in db.query(ctx, f"SELECT {key}, count(*) FROM {table} GROUP BY 1"):
            counts[order_id] = counts.get(order_id, 0) + n
    return counts


def verify(ctx: Context) -> list[Check]:
    total = ctx.params["orders"]
    done = {r[0] for r in db.query(ctx, "SELECT order_id FROM checkpoints")}
    rows = _rows_by_unit(ctx)
    partial = [u for u in rows if u not in done]
    orphans = sum(n for u, n in rows.items() if u not in done)
    sessions = db.query(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        (_app(ctx),))[0][0]
    note = "" if ctx.params["checkpoints"] else "no checkpoints: nothing tells a finished unit"
    return [
        Check("units committed at failure", total, len(done), len(done) == total, note,
              metric="committed"),
        Check("no partially written unit", 0, len(partial), not partial,
              ", ".join(sorted(partial)[:5]), metric="partial_units"),
        Check("no orphan rows", 0, orphans, orphans == 0,
              "rows of units without a checkpoint", metric="orphan_rows"),
        Check("no workload session left open", 0, sessions, sessions == 0,
              "pg_stat_activity after the cell ended", metric="open_sessions"),
    ]


# ---- the recovery run ----

def recover(ctx: Context) -> list[Check]:
    """Resume from the checkpoints: clean every unfinished unit's rows and run it again."""
    p, all_units = ctx.params, units(ctx)
    started = time.perf_counter()
    with psycopg.connect(ctx.services["postgres"]["dsn"], **db.connect_kwargs(ctx)) as conn:
        done = {r[0] for r in conn.execute("SELECT order_id FROM checkpoints")} \
            if p["checkpoints"] else set()
        todo = [u for u in all_units if u.id not in done]
        ids = [u.id for u in todo]
        with conn.transaction():
            conn.execute("DELETE FROM orders WHERE id = ANY(%s)", (ids,))
            for table in (*TABLES[1:], "quarantine", "checkpoints"):
                conn.execute(f"DELETE FROM {table} WHERE order_id = ANY(%s)", (ids,))
        for unit in todo:
            pipeline(conn, unit, {**p, "checkpoints": True}, recovering=True)
    recovery_s = time.perf_counter() - started
    mismatches = _mismatches(ctx, all_units)
    run_s = ctx.extra.get("run_s") or 0.0
    return [
        Check("recovery: units executed again", 0, len(todo), True,
              "resumed from checkpoints" if p["checkpoints"] else "no checkpoints: all redone",
              metric="rework_units"),
        Check("recovery: wall time", None, round(recovery_s, 4), True, metric="recovery_s"),
        Check("recovery: total time", None, round(run_s + recovery_s, 4), True,
              f"run phase {run_s:.3f} s + recovery {recovery_s:.3f} s", metric="total_s"),
        Check("recovery: tables exact", 0, mismatches, mismatches == 0,
              "orders, lines, adjustments, checkpoints and quarantine vs the orders",
              metric="mismatches_after"),
    ]


def expected_rows(all_units: list[Unit]) -> dict[str, set]:
    """Every table after a correct recovery, row by row."""
    rows: dict[str, set] = {t: set() for t in (*TABLES, "checkpoints", "quarantine")}
    for unit in all_units:
        _, customer, lines = unit.payload
        rows["orders"].add((unit.id, customer))
        rows["checkpoints"].add((unit.id,))
        for n, (sku, qty) in enumerate(lines):
            if isinstance(qty, int):
                rows["order_lines"].add((unit.id, n, sku, qty))
                rows["inventory_adjustments"].add((unit.id, sku, -qty))
            else:
                rows["quarantine"].add((unit.id, n))
    return rows


def _mismatches(ctx: Context, all_units: list[Unit]) -> int:
    expected = expected_rows(all_units)
    columns = {"quarantine": "order_id, line"}
    count = 0
    for table, want in expected.items():
        got = db.query(ctx, f"SELECT {columns.get(table, '*')} FROM {table}")
        count += len(want.symmetric_difference(got)) + len(got) - len(set(got))
    return count


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)
