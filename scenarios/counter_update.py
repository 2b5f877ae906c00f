"""counter_update: units increment shared counters; the naive read-modify-write loses some.

Each increment is one transaction that also writes a ledger row (unit, seq, counter), so
``verify`` knows exactly which increments committed: the lost ones are
``ledger rows - counter value`` per counter. Strategies (``--param strategy=``):

- ``naive``: SELECT n, compute n + 1 in Python, UPDATE SET n = <value> (read 42, write 43:
  two workers that read 42 both write 43 and one increment is gone);
- ``for_update``: the same with SELECT ... FOR UPDATE (the row is locked between read and write);
- ``atomic``: UPDATE SET n = n + 1 (the server reads and writes under the row lock);
- ``serializable``: the naive statements in SERIALIZABLE transactions, retried on 40001.

Hot-key skew: counter i is picked with weight 1 / (i + 1) ** skew (0 = uniform).
"""

from __future__ import annotations

import random
from collections import Counter
from functools import partial
from typing import Any, Generator

from harness.scenario import Check, Context, Metric, Param, Unit, UnitResult
from harness.workloads import db
from harness.workloads.db import aclose_worker, close_worker  # noqa: F401 (hooks)

NAME = "counter_update"
DESCRIPTION = "shared counters incremented by every unit: lost updates of read-modify-write"
SERVICES = ("postgres",)
STRATEGIES = ("naive", "for_update", "atomic", "serializable")
PARAMS = (
    Param("units", 200, "number of units", minimum=1),
    Param("counters", 8, "number of shared counters", minimum=1),
    Param("increments", 5, "increments per unit (one transaction each)", minimum=1),
    Param("skew", 1.0, "hot-key skew: counter i has weight 1/(i+1)**skew (0 = uniform)",
          minimum=0.0),
    Param("strategy", "naive", "how an increment is written", choices=STRATEGIES),
    Param("seed", 1, "seed of the counter choices"),
    *db.retry_params(budget=100, base_ms=1.0),
)
METRICS = (Metric("lost_updates", "increments",
                  help="increments committed (ledger rows) but missing from the counters"),)
RETRY_ON = ("40001", "40P01")  # serialization failure, deadlock
DDL = """
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE TABLE ledger (unit text, seq int, counter int NOT NULL, PRIMARY KEY (unit, seq));
"""


def units(ctx: Context) -> list[Unit]:
    p = ctx.params
    rng = random.Random(p["seed"])
    weights = [1 / (i + 1) ** p["skew"] for i in range(p["counters"])]
    result = []
    for i in range(p["units"]):
        picks = tuple(rng.choices(range(p["counters"]), weights, k=p["increments"]))
        # Group by the unit's hottest counter: grouped mode caps the writers of one key.
        hottest = Counter(picks).most_common(1)[0][0]
        result.append(Unit(id=f"u{i:05d}", group=f"c{hottest:03d}", payload=picks))
    return result


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, DDL + f"INSERT INTO counters (id) SELECT generate_series(0, "
                    f"{ctx.params['counters'] - 1});")


def _increment(strategy: str, unit: str, seq: int, counter: int) -> Generator[Any, Any, None]:
    if strategy == "atomic":
        yield "UPDATE counters SET n = n + 1 WHERE id = %s", (counter,)
    else:
        lock = " FOR UPDATE" if strategy == "for_update" else ""
        row = yield f"SELECT n FROM counters WHERE id = %s{lock}", (counter,)
        yield "UPDATE counters SET n = %s WHERE id = %s", (row[0] + 1, counter)
    yield "INSERT INTO ledger (unit, seq, counter) VALUES (%s, %s, %s)", (unit, seq, counter)


def _plan(unit: Unit, ctx: Context) -> dict[str, Any]:
    strategy = ctx.params["strategy"]
    settings = {"default_transaction_isolation": "serializable"} \
        if strategy == "serializable" else {}
    return {"transactions": [partial(_increment, strategy, unit.id, seq, counter)
                             for seq, counter in enumerate(unit.payload)],
            "policy": db.policy_from(ctx.params), "retry_on": RETRY_ON, "seed": unit.id,
            "settings": settings}


def work(unit: Unit, ctx: Context) -> UnitResult:
    return db.run_unit(ctx, **_plan(unit, ctx))


async def awork(unit: Unit, ctx: Context) -> UnitResult:
    return await db.arun_unit(ctx, **_plan(unit, ctx))


def verify(ctx: Context) -> list[Check]:
    rows = db.query(ctx, "SELECT c.id, c.n, (SELECT count(*) FROM ledger l "
                         "WHERE l.counter = c.id) FROM counters c ORDER BY c.id")
    committed = sum(r[2] for r in rows)
    total = sum(r[1] for r in rows)
    worst = max(rows, key=lambda r: r[2] - r[1])
    expected = ctx.params["units"] * ctx.params["increments"]
    return [
        Check("lost increments", 0, committed - total, committed == total,
              f"{committed} increments committed, counters sum to {total}; "
              f"most lost on counter {worst[0]}: {worst[2] - worst[1]}",
              metric="lost_updates"),
        Check("increments committed", expected, committed, committed == expected,
              "ledger rows, one per committed increment"),
    ]


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)
