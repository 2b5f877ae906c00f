"""retry_storm: units hit a shared resource that fails transiently, and retry.

The resource is a few hot rows: a unit locks one (SELECT ... FOR UPDATE), keeps it for
``hold_ms`` (server-side, modelling the resource's service time), increments it and logs
itself as applied. A busy row fails the attempt: at once with ``nowait`` (FOR UPDATE
NOWAIT, LockNotAvailable 55P03), else after ``lock_timeout_ms`` (55P03; PostgreSQL bounds
each lock wait, and a queue of waiters on one row is a chain of short waits, so this
bounds less than it seems) or ``statement_timeout_ms`` (the whole statement, 57014). On
top of that the database itself fails an attempt with probability ``fault_rate``
(InsufficientResources 53000). Every failure is transient, so units retry under ``retry``
(none | fixed | exponential_jitter) within ``budget`` retries; retries add load to the
resource that made them fail, which is the storm. A unit that gives up logs itself as
such and is recorded as failed.

Measured: attempts per unit (amplification), makespan (time to drain), the database's
lock waits and sessions (the ``db`` series), units that gave up (errors).
``verify``: every unit applied exactly once or reported as failed.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Generator

from harness.scenario import Check, Context, Param, Unit, UnitResult
from harness.workloads import db
from harness.workloads.db import aclose_worker, close_worker  # noqa: F401 (hooks)

NAME = "retry_storm"
DESCRIPTION = "a contended resource failing transiently: retry policies, amplification, drain"
SERVICES = ("postgres",)
PARAMS = (
    Param("units", 200, "number of units", minimum=1),
    Param("hot_rows", 2, "rows every unit contends for", minimum=1),
    Param("hold_ms", 5.0, "how long a unit keeps its row locked", minimum=0.0),
    Param("nowait", True, "a busy row fails the attempt at once (FOR UPDATE NOWAIT)"),
    Param("lock_timeout_ms", 0, "lock_timeout of the sessions (0 = none)", minimum=0),
    Param("statement_timeout_ms", 0, "statement_timeout of the sessions (0 = none)",
          minimum=0),
    Param("fault_rate", 0.0, "probability that the database fails an attempt outright",
          minimum=0.0, maximum=1.0),
    *db.retry_params(budget=8),
)
RETRY_ON = ("55P03", "57014", "53000")  # lock timeout, statement timeout, injected fault
DDL = """
CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE TABLE applied (unit text PRIMARY KEY);
CREATE TABLE gave_up (unit text PRIMARY KEY);
CREATE FUNCTION fail_sometimes(rate float8) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF random() < rate THEN
    RAISE EXCEPTION 'injected transient fault (rate %)', rate USING ERRCODE = '53000';
  END IF;
END $$;
"""


def units(ctx: Context) -> list[Unit]:
    rows = ctx.params["hot_rows"]
    # One group per hot row: grouped mode caps the units queueing on one row.
    return [Unit(id=f"u{i:05d}", group=f"row{i % rows}", payload=i % rows)
            for i in range(ctx.params["units"])]


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, DDL + f"INSERT INTO hot (id) SELECT generate_series(0, "
                    f"{ctx.params['hot_rows'] - 1});")


def _apply(unit: Unit, ctx: Context) -> Generator[Any, Any, None]:
    p = ctx.params
    if p["fault_rate"]:
        yield "SELECT fail_sometimes(%s)", (p["fault_rate"],)
    nowait = " NOWAIT" if p["nowait"] else ""
    yield f"SELECT n FROM hot WHERE id = %s FOR UPDATE{nowait}", (unit.payload,)
    if p["hold_ms"]:
        yield "SELECT pg_sleep(%s)", (p["hold_ms"] / 1000,)
    yield "UPDATE hot SET n = n + 1 WHERE id = %s", (unit.payload,)
    yield "INSERT INTO applied (unit) VALUES (%s)", (unit.id,)


def _give_up(unit: Unit) -> Generator[Any, Any, None]:
    yield "INSERT INTO gave_up (unit) VALUES (%s)", (unit.id,)


def _plan(unit: Unit, ctx: Context) -> dict[str, Any]:
    p = ctx.params
    return {"transactions": [partial(_apply, unit, ctx)], "policy": db.policy_from(p),
            "retry_on": RETRY_ON, "seed": unit.id, "on_give_up": partial(_give_up, unit),
            "settings": {"lock_timeout": f"{p['lock_timeout_ms']}ms",
                         "statement_timeout": f"{p['statement_timeout_ms']}ms"}}


def work(unit: Unit, ctx: Context) -> UnitResult:
    return db.run_unit(ctx, **_plan(unit, ctx))


async def awork(unit: Unit, ctx: Context) -> UnitResult:
    return await db.arun_unit(ctx, **_plan(unit, ctx))


def verify(ctx: Context) -> list[Check]:
    (applied, gave_up, both, increments), = db.query(ctx, """
        SELECT (SELECT count(*) FROM applied), (SELECT count(*) FROM gave_up),
               (SELECT count(*) FROM applied JOIN gave_up USING (unit)),
               (SELECT coalesce(sum(n), 0) FROM hot)""")
    expected = ctx.params["units"]
    return [
        Check("units applied or reported failed", expected, applied + gave_up,
              applied + gave_up == expected and both == 0,
              f"{applied} applied, {gave_up} gave up, {both} both"),
        Check("increments match applied units", applied, int(increments),
              increments == applied, "sum of the hot rows vs the applied log"),
    ]


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)
