"""deadlock_writes: transfers between accounts, each transaction locking two rows.

A transfer updates the source row, holds its lock for ``hold_ms`` (server-side, modelling
work done inside the transaction), then updates the destination row and logs itself.
With ``order=random`` two workers can take the same two rows in opposite order and
PostgreSQL aborts one of them (SQLSTATE 40P01), which is retried under the retry policy
and counted. ``order=sorted`` (rows locked in id order) or ``partition=by_worker`` (each
worker claims a slice of the accounts through an advisory lock) make deadlocks impossible.

``verify``: the sum of balances is conserved, every logged transfer is applied exactly
once to both balances, and every transfer committed.
"""

from __future__ import annotations

import random
import zlib
from functools import partial
from typing import Any, Generator

from harness.scenario import Check, Context, Param, Unit, UnitResult
from harness.workloads import db
from harness.workloads.db import aclose_worker, close_worker  # noqa: F401 (hooks)

NAME = "deadlock_writes"
DESCRIPTION = "two-row transfers: deadlocks with random lock order, none with sorted/partitioned"
SERVICES = ("postgres",)
INITIAL = 1000
PARAMS = (
    Param("units", 200, "number of transfers", minimum=1),
    Param("accounts", 16, "number of accounts (by_worker needs 2 per worker)", minimum=2),
    Param("order", "random", "lock order of the two rows", choices=("random", "sorted")),
    Param("partition", "none", "by_worker: each worker transfers within its own slice",
          choices=("none", "by_worker")),
    Param("hold_ms", 1.0, "time the first row stays locked before the second is taken",
          minimum=0.0),
    Param("deadlock_timeout_ms", 20, "deadlock_timeout of the sessions (needs a superuser; "
          "else the server's, 1 s by default)", minimum=1),
    Param("seed", 1, "seed of the transfers"),
    *db.retry_params(budget=20),
)
RETRY_ON = ("40P01",)
DDL = """
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE transfers (unit text PRIMARY KEY, src int NOT NULL, dst int NOT NULL,
                        amount int NOT NULL);
-- The slot (0..n-1) this session holds, claiming a free one on first call: a
-- session-level advisory lock, so each worker connection owns one slice of accounts.
CREATE FUNCTION worker_slot(n int, key int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE s int;
BEGIN
  SELECT objid::int INTO s FROM pg_locks WHERE locktype = 'advisory'
     AND pid = pg_backend_pid() AND classid = key::oid AND objsubid = 2;
  IF s IS NOT NULL THEN RETURN s; END IF;
  FOR s IN 0 .. n - 1 LOOP
    IF pg_try_advisory_lock(key, s) THEN RETURN s; END IF;
  END LOOP;
  RAISE EXCEPTION 'all % worker slots are taken', n USING ERRCODE = '53000';
END $$;
"""


def units(ctx: Context) -> list[Unit]:
    rng = random.Random(ctx.params["seed"])
    n = ctx.params["units"]
    # Offsets are mapped to accounts at run time (partition=by_worker needs the worker).
    return [Unit(id=f"t{i:05d}", group=f"g{i * 4 // n}",
                 payload=(rng.randrange(1 << 30), rng.randrange(1 << 30), rng.randint(1, 100)))
            for i in range(n)]


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, DDL + f"INSERT INTO accounts SELECT i, {INITIAL} FROM "
                    f"generate_series(0, {ctx.params['accounts'] - 1}) i;")


def _transfer(unit: Unit, ctx: Context) -> Generator[Any, Any, None]:
    p = ctx.params
    a, b, amount = unit.payload
    size, base = p["accounts"], 0
    if p["partition"] == "by_worker":
        slots = max(1, ctx.concurrency)
        size = p["accounts"] // slots
        if size < 2:
            raise ValueError(f"partition=by_worker needs accounts >= 2 x {slots} workers")
        key = zlib.crc32(ctx.schema.encode()) & 0x7FFFFFFF
        row = yield "SELECT worker_slot(%s, %s)", (slots, key)
        base = row[0] * size
    src = base + a % size
    dst = base + (a % size + 1 + b % (size - 1)) % size
    first, second = (src, dst) if p["order"] == "random" else sorted((src, dst))
    yield ("UPDATE accounts SET balance = balance + %s WHERE id = %s",
           (-amount if first == src else amount, first))
    if p["hold_ms"]:
        yield "SELECT pg_sleep(%s)", (p["hold_ms"] / 1000,)
    yield ("UPDATE accounts SET balance = balance + %s WHERE id = %s",
           (-amount if second == src else amount, second))
    yield ("INSERT INTO transfers (unit, src, dst, amount) VALUES (%s, %s, %s, %s)",
           (unit.id, src, dst, amount))


def _plan(unit: Unit, ctx: Context) -> dict[str, Any]:
    return {"transactions": [partial(_transfer, unit, ctx)],
            "policy": db.policy_from(ctx.params), "retry_on": RETRY_ON, "seed": unit.id,
            "settings": {"deadlock_timeout": f"{ctx.params['deadlock_timeout_ms']}ms"}}


def work(unit: Unit, ctx: Context) -> UnitResult:
    return db.run_unit(ctx, **_plan(unit, ctx))


async def awork(unit: Unit, ctx: Context) -> UnitResult:
    return await db.arun_unit(ctx, **_plan(unit, ctx))


def verify(ctx: Context) -> list[Check]:
    accounts = ctx.params["accounts"]
    (total,), = db.query(ctx, "SELECT coalesce(sum(balance), 0) FROM accounts")
    (logged,), = db.query(ctx, "SELECT count(*) FROM transfers")
    (wrong,), = db.query(ctx, f"""
        SELECT count(*) FROM accounts a WHERE a.balance <> {INITIAL}
          + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0)
          - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0)""")
    return [
        Check("balance conserved", accounts * INITIAL, int(total),
              total == accounts * INITIAL, "sum of all balances"),
        Check("transfers applied exactly once", 0, wrong, wrong == 0,
              "accounts whose balance differs from the transfer log"),
        Check("transfers committed", ctx.params["units"], logged,
              logged == ctx.params["units"], "rows in the transfer log"),
    ]


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)
