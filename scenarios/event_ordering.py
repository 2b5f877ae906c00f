"""event_ordering: effects before causes; consumers applying per-entity events out of order.

Producers emit events for entities (create, updates, maybe a delete), each with its
entity's sequence number 1, 2, 3, ...; the log merges the producers' streams (a seeded
shuffle that keeps every entity's own order). Consumers apply the events to a PostgreSQL
table, one transaction per event, after a short processing step (a seeded sleep of up to
``apply_ms``: deserialising, enriching). The naive consumer applies what it gets:
``create`` inserts, ``update`` updates (nothing, if the create has not landed: an effect
before its cause), ``delete`` deletes. Every application is logged in ``applied`` in the
order it committed.

Strategies (``--param strategy=``):

- ``none``: one unit per event, applied as it comes;
- ``per_key``: one unit per key partition (keys dealt into ``partitions`` batches), its
  events applied in log order by the one worker that runs the unit. A policy sees units,
  never workers, and no executor pins a unit to a worker, so "a key always goes to the same
  worker" is made a property of the unit: a partition is one unit, and whichever worker
  runs it is the only consumer of its keys. That holds in every executor, and the cost is
  visible: parallelism is capped at the number of partitions, and a hot partition is a
  long unit;
- ``sequence_buffer``: one unit per event; under the entity's cursor row lock an event
  that is not the next of its entity waits in a buffer table, and the event that is next
  applies itself and drains the buffered successors (reorder by sequence number);
- ``sequencer``: one unit per event, through one central sequencer: a single cursor over
  the log position, the same buffer-and-drain, so the whole log applies in total order
  (every event serialised on one lock).

``verify`` is exact: ``ordering_violations`` counts applications of an event after a later
event of the same entity had been applied; ``final_state_mismatches`` counts entities whose
final row (or its absence) differs from the serial result, the log applied in order.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

from harness.scenario import Check, Context, Metric, Param, Unit, UnitResult
from harness.workloads import db
from harness.workloads.db import close_worker  # noqa: F401 (hook)

NAME = "event_ordering"
DESCRIPTION = "per-entity events applied by parallel consumers: ordering violations"
SERVICES = ("postgres",)
STRATEGIES = ("none", "per_key", "sequence_buffer", "sequencer")
PARAMS = (
    Param("entities", 8, "entities (keys)", minimum=1),
    Param("updates", 5, "updates per entity after its create", minimum=0),
    Param("delete_share", 0.3, "share of entities deleted at the end", minimum=0.0, maximum=1.0),
    Param("strategy", "none", "how ordering is kept", choices=STRATEGIES),
    Param("partitions", 4, "per_key: key partitions (units)", minimum=1),
    Param("apply_ms", 5.0, "most ms of a consumer's processing before it applies an event",
          minimum=0.0),
    Param("seed", 1, "seed of the log's interleaving and the processing times"),
)
METRICS = (Metric("ordering_violations", "events",
                  help="events applied after a later event of the same entity"),
           Metric("final_state_mismatches", "entities",
                  help="entities whose final row differs from the serial result"))
DDL = """
CREATE TABLE entities (key text PRIMARY KEY, value int NOT NULL, seq int NOT NULL);
CREATE TABLE applied (id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL);
CREATE TABLE cursors (key text PRIMARY KEY, next int NOT NULL);
CREATE TABLE buffer (key text NOT NULL, seq int NOT NULL, pos int NOT NULL, op text NOT NULL,
                     value int NOT NULL, PRIMARY KEY (key, seq));
"""
GLOBAL = "*"  # the sequencer's one cursor

# An event is a plain tuple (Dask and the process pool ship it without this file):
# (pos in the log, key, seq, op, value, processing seconds)
Event = tuple


def log(params: dict[str, Any]) -> list[Event]:
    """The producers' events, merged into one log that keeps each entity's own order."""
    rng = random.Random(params["seed"])
    streams = []
    for k in range(params["entities"]):
        ops = ["create"] + ["update"] * params["updates"]
        if rng.random() < params["delete_share"]:
            ops.append("delete")
        streams.append([(f"k{k:03d}", seq, op, rng.randrange(1000))
                        for seq, op in enumerate(ops, start=1)])
    merged = []
    while any(streams):
        stream = rng.choice([s for s in streams if s])
        merged.append(stream.pop(0))
    return [(pos, key, seq, op, value, rng.uniform(0, params["apply_ms"]) / 1000)
            for pos, (key, seq, op, value) in enumerate(merged)]


def serial_state(events: list[Event]) -> dict[str, tuple[int, int]]:
    """The serial result: the log applied in order (key -> (value, seq))."""
    state: dict[str, tuple[int, int]] = {}
    for _, key, seq, op, value, _ in sorted(events):
        _apply_dict(state, key, seq, op, value)
    return state


def _apply_dict(state: dict, key: str, seq: int, op: str, value: int) -> None:
    if op == "create":
        state.setdefault(key, (value, seq))
    elif op == "update" and key in state:
        state[key] = (value, seq)
    elif op == "delete":
        state.pop(key, None)


def units(ctx: Context) -> list[Unit]:
    events = log(ctx.params)
    if ctx.params["strategy"] == "per_key":
        parts: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            parts[int(event[1][1:]) % ctx.params["partitions"]].append(event)
        return [Unit(id=f"p{i:03d}", group=f"p{i:03d}", payload=tuple(parts[i]))
                for i in sorted(parts)]
    return [Unit(id=f"e{e[0]:05d}", group=e[1], payload=(e,)) for e in events]


def reset(ctx: Context) -> None:
    keys = sorted({e[1] for e in log(ctx.params)} | {GLOBAL})
    values = ", ".join(f"('{k}', {0 if k == GLOBAL else 1})" for k in keys)
    db.fresh_schema(ctx, DDL + f"INSERT INTO cursors VALUES {values};")


# ---- consumers ----

def _apply(key: str, seq: int, op: str, value: int):
    if op == "create":
        yield ("INSERT INTO entities VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
               (key, value, seq))
    elif op == "update":
        yield "UPDATE entities SET value = %s, seq = %s WHERE key = %s", (value, seq, key)
    else:
        yield "DELETE FROM entities WHERE key = %s", (key,)
    yield "INSERT INTO applied (key, seq) VALUES (%s, %s)", (key, seq)


def _naive(event: Event):
    def txn():
        _, key, seq, op, value, _ = event
        yield from _apply(key, seq, op, value)
    return txn


def _buffered(event: Event, cursor: str):
    """Apply ``event`` if it is next on ``cursor`` (its key, or the sequencer's global one)
    and drain its buffered successors; else park it in the buffer. The cursor row's lock
    makes check and apply one step."""
    def txn():
        pos, key, seq, op, value, _ = event
        mine = pos if cursor == GLOBAL else seq  # the sequencer counts log positions
        row = yield "SELECT next FROM cursors WHERE key = %s FOR UPDATE", (cursor,)
        nxt = row[0]
        if mine != nxt:
            yield ("INSERT INTO buffer VALUES (%s, %s, %s, %s, %s)", (key, seq, pos, op, value))
            return
        yield from _apply(key, seq, op, value)
        nxt += 1
        where = "pos = %s" if cursor == GLOBAL else "key = %s AND seq = %s"
        while True:
            args = (nxt,) if cursor == GLOBAL else (cursor, nxt)
            row = yield (f"DELETE FROM buffer WHERE {where} RETURNING key, seq, op, value", args)
            if row is None:
                break
            yield from _apply(*row)
            nxt += 1
        yield "UPDATE cursors SET next = %s WHERE key = %s", (nxt, cursor)
    return txn


def _transactions(unit: Unit, ctx: Context) -> list:
    strategy, txns = ctx.params["strategy"], []
    for event in unit.payload:
        if strategy == "sequence_buffer":
            txns.append(_buffered(event, event[1]))
        elif strategy == "sequencer":
            txns.append(_buffered(event, GLOBAL))
        else:
            txns.append(_naive(event))
    return txns


def work(unit: Unit, ctx: Context) -> UnitResult:
    conn = db.connection(ctx)
    for event, txn in zip(unit.payload, _transactions(unit, ctx)):
        time.sleep(event[5])  # the consumer's processing before it applies
        db.run_transaction(conn, txn)
    return UnitResult(rows=len(unit.payload))


# ---- checks ----

def violations(applied: list[tuple[str, int]]) -> int:
    """Applications (in commit order) of an event after a later one of its entity."""
    latest: dict[str, int] = {}
    count = 0
    for key, seq in applied:
        if seq < latest.get(key, 0):
            count += 1
        latest[key] = max(seq, latest.get(key, 0))
    return count


def verify(ctx: Context) -> list[Check]:
    events = log(ctx.params)
    applied = [(k, s) for k, s in db.query(ctx, "SELECT key, seq FROM applied ORDER BY id")]
    final = {k: (v, s) for k, v, s in db.query(ctx, "SELECT key, value, seq FROM entities")}
    expected = serial_state(events)
    mismatches = sum(1 for k in expected.keys() | final.keys() if expected.get(k) != final.get(k))
    bad = violations(applied)
    once = len(set(applied)) == len(applied) == len(events)
    return [
        Check("events applied in entity order", 0, bad, bad == 0,
              f"{bad} of {len(applied)} applications came after a later event of their entity",
              metric="ordering_violations"),
        Check("final state equals the serial result", 0, mismatches, mismatches == 0,
              f"{len(expected)} entities expected, {len(final)} in the table",
              metric="final_state_mismatches"),
        Check("every event applied exactly once", len(events), len(applied), once,
              f"{len(set(applied))} distinct"),
    ]


def bound(ctx: Context, executor: str) -> float:
    """The processing sleeps alone: each unit's, spread over the cell's concurrency, and
    never less than the longest unit (a hot partition)."""
    per = [sum(e[5] for e in u.payload) for u in units(ctx)]
    return max(max(per, default=0.0), sum(per) / max(1, ctx.concurrency))


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)
