"""approvals: humans are not threads; parallel approval requests issue duplicate invoices.

Each unit is one ticket, from its request to its decision. A ticket passes automated
validation checks (machine steps), then needs one approval from its reviewers; an approval
triggers the downstream action, issuing the ticket's invoice (a row in PostgreSQL). A
ticket nobody approves before its deadline is dropped.

**The human delays are modelled, on purpose.** A reviewer answers after a lognormal delay
(median ``review_min`` human minutes) or is absent and never answers; the request times out
after ``timeout_min``. Human minutes are scaled to wall time by ``time_scale`` (seconds per
human minute: 0.004 makes a minute 4 ms), so the run takes seconds and every latency in the
table is in scaled time: multiply by 1 / time_scale / 60 for human hours. The delays come
from a seed per ticket, so every mode and repeat meets the same reviewers; who answers
first is decided from those delays, not from a clock, so the outcomes are exact and
``verify`` knows them.

Strategies (``--param strategy=``):

- ``sequential``: validation checks one after another, then one reviewer at a time, the
  next asked when the previous times out; one approval, one invoice.
- ``parallel``: checks at once, every reviewer asked at once (one thread per request), and
  every approval triggers the downstream action. That action guards itself the naive way,
  check-then-act (no invoice yet? bill the customer, ``invoice_ms``, then insert), so two
  approvals arriving within the billing call both issue an invoice.
- ``parallel_claim``: the same, but the action first claims the ticket with
  ``INSERT ... ON CONFLICT DO NOTHING`` on a unique key; only the winner issues.
- ``hybrid`` (the article's): automated checks in parallel, human steps sequential.

A human cannot be cancelled: in the parallel strategies a ticket's unit ends when every
reviewer asked has answered or timed out, so its latency is time to close (time to
decision for the sequential strategies, where the decision closes the ticket). Tickets
arrive one every ``arrival_min`` (``schedule``): latency counts from a ticket's arrival,
so the table's latency p50/p99 are time to decision (close) with the queue included.
Declared metrics: ``duplicates`` (invoices issued twice) and ``dropped`` (tickets without a
decision by their deadline).
"""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor


from harness.scenario import Check, Context, Metric, Param, Unit, UnitResult
from harness.workloads import db

NAME = "approvals"
DESCRIPTION = ("tickets approved by modelled humans (lognormal delays, scaled by time_scale): "
               "duplicate invoices of parallel requests")
SERVICES = ("postgres",)
STRATEGIES = ("sequential", "parallel", "parallel_claim", "hybrid")
PARAMS = (
    Param("tickets", 40, "number of tickets (units)", minimum=1),
    Param("reviewers", 3, "reviewers per ticket", minimum=1),
    Param("strategy", "sequential", "how approvals are requested", choices=STRATEGIES),
    Param("time_scale", 0.004, "seconds of wall time per modelled human minute",
          minimum=0.0, type=float),
    Param("review_min", 5.0, "median reviewer delay in human minutes (lognormal)", minimum=0.0),
    Param("sigma", 0.8, "lognormal sigma of reviewer delays", minimum=0.0),
    Param("absent", 0.2, "probability a reviewer never answers", minimum=0.0, maximum=1.0),
    Param("timeout_min", 15.0, "human minutes before a request times out", minimum=0.0),
    Param("deadline_min", 25.0, "human minutes a ticket may wait for its decision", minimum=0.0),
    Param("arrival_min", 1.0, "human minutes between ticket arrivals (0 = a batch at t0)",
          minimum=0.0),
    Param("checks", 3, "automated validation checks per ticket", minimum=0),
    Param("check_ms", 10.0, "wall ms of one automated check (a machine call)", minimum=0.0),
    Param("invoice_ms", 15.0, "wall ms of the billing call inside the downstream action",
          minimum=0.0),
    Param("seed", 1, "seed of the reviewers' delays and absences"),
)
METRICS = (Metric("duplicates", "invoices", help="invoices issued more than once per ticket"),
           Metric("dropped", "tickets", help="tickets without a decision by their deadline"),)
DDL = """
CREATE TABLE claims (ticket text PRIMARY KEY, reviewer int NOT NULL);
CREATE TABLE invoices (id bigserial PRIMARY KEY, ticket text NOT NULL, reviewer int NOT NULL);
CREATE TABLE outcomes (ticket text PRIMARY KEY, outcome text NOT NULL, reviewer int);
"""
PARALLEL = ("parallel", "parallel_claim")


# ---- the model: who answers when (minutes), decided from the seed alone ----

# A unit's payload is its reviewers' answer delays in human minutes (None: absent), a
# plain tuple: Dask workers unpickle payloads without importing this file.
Delays = tuple  # tuple[float | None, ...]


def units(ctx: Context) -> list[Unit]:
    p = ctx.params
    result = []
    for i in range(p["tickets"]):
        rng = random.Random(f"{p['seed']}-{i}")
        delays = tuple(None if rng.random() < p["absent"]
                       else p["review_min"] * math.exp(rng.gauss(0.0, p["sigma"]))
                       for _ in range(p["reviewers"]))
        result.append(Unit(id=f"t{i:05d}", group=f"t{i:05d}", payload=delays))
    return result


def _answers(delay: float | None, timeout: float) -> bool:
    return delay is not None and delay <= timeout


def sequential_plan(delays: Delays, p: dict) -> tuple[list[float], int | None]:
    """Minutes waited on each reviewer asked in turn, and who approved (None: dropped)."""
    waits, elapsed = [], 0.0
    for who, delay in enumerate(delays):
        if elapsed >= p["deadline_min"]:
            break
        answered = _answers(delay, p["timeout_min"])
        wait = min(delay if answered else p["timeout_min"], p["deadline_min"] - elapsed)
        waits.append(wait)
        elapsed += wait
        if answered and elapsed <= p["deadline_min"] and wait == delay:
            return waits, who
    return waits, None


def parallel_approvers(delays: Delays, p: dict) -> list[int]:
    """Reviewers whose approval arrives (every one triggers the downstream action)."""
    return [who for who, d in enumerate(delays) if _answers(d, p["timeout_min"])]


def expected_outcome(delays: Delays, p: dict) -> int | None:
    """The approving reviewer, or None when the ticket is dropped."""
    if p["strategy"] in PARALLEL:
        arrived = [(delays[w], w) for w in parallel_approvers(delays, p)]
        first = min(arrived, default=None)
        return first[1] if first and first[0] <= p["deadline_min"] else None
    return sequential_plan(delays, p)[1]


# ---- the run ----

def schedule(ctx: Context, units: list[Unit]) -> list[float]:
    """Tickets arrive one every ``arrival_min``: a unit's latency is its time to decision
    from its arrival, the queue in front of it included."""
    step = ctx.params["arrival_min"] * ctx.params["time_scale"]
    return [i * step for i in range(len(units))]


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, DDL)


_pools: dict[str, object] = {}
_pools_lock = threading.Lock()


def _pool(ctx: Context):
    """This process's connection pool: the reviewers' threads act concurrently."""
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        pool = _pools.get(ctx.cell_id)
        if pool is None:
            size = max(1, ctx.concurrency) * ctx.params["reviewers"]
            pool = ConnectionPool(ctx.services["postgres"]["dsn"], min_size=1, max_size=size,
                                  kwargs=db.connect_kwargs(ctx), open=True)
            _pools[ctx.cell_id] = pool
        return pool


def close_worker(ctx: Context | None = None) -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _sleep_min(minutes: float, p: dict) -> None:
    time.sleep(minutes * p["time_scale"])


def _issue(ctx: Context, ticket: str, reviewer: int) -> int:
    """The downstream action of one approval: 1 when it issued an invoice."""
    p = ctx.params
    with _pool(ctx).connection() as conn:
        if p["strategy"] == "parallel_claim":
            claimed = conn.execute("INSERT INTO claims VALUES (%s, %s) ON CONFLICT DO NOTHING "
                                   "RETURNING ticket", (ticket, reviewer)).fetchone()
            if claimed is None:
                return 0  # another approval won the claim: nothing to do
        else:  # check-then-act: the naive guard, racy under concurrent approvals
            if conn.execute("SELECT 1 FROM invoices WHERE ticket = %s", (ticket,)).fetchone():
                return 0
        time.sleep(p["invoice_ms"] / 1000)  # the billing call
        with conn.transaction():
            conn.execute("INSERT INTO invoices (ticket, reviewer) VALUES (%s, %s)",
                         (ticket, reviewer))
            conn.execute("INSERT INTO outcomes VALUES (%s, 'approved', %s) "
                         "ON CONFLICT DO NOTHING", (ticket, reviewer))
        return 1


def _drop(ctx: Context, ticket: str) -> None:
    with _pool(ctx).connection() as conn:
        conn.execute("INSERT INTO outcomes VALUES (%s, 'dropped', NULL) ON CONFLICT DO NOTHING",
                     (ticket,))


def _validate(p: dict, parallel: bool) -> None:
    seconds = [p["check_ms"] / 1000] * p["checks"]
    if parallel and len(seconds) > 1:
        with ThreadPoolExecutor(len(seconds)) as pool:
            list(pool.map(time.sleep, seconds))
    else:
        for s in seconds:
            time.sleep(s)


def _reviewer(ctx: Context, ticket: str, delays: Delays, who: int) -> int:
    """One request of a parallel strategy: wait for the human, then act on the approval."""
    p, delay = ctx.params, delays[who]
    if not _answers(delay, p["timeout_min"]):
        _sleep_min(p["timeout_min"], p)
        return 0
    _sleep_min(delay, p)
    return _issue(ctx, ticket, who) if delay <= p["deadline_min"] else 0


def work(unit: Unit, ctx: Context) -> UnitResult:
    p, ticket, delays = ctx.params, unit.id, unit.payload
    _validate(p, parallel=p["strategy"] != "sequential")
    if p["strategy"] in PARALLEL:
        with ThreadPoolExecutor(len(delays)) as pool:
            issued = sum(pool.map(lambda who: _reviewer(ctx, ticket, delays, who),
                                  range(len(delays))))
        if not parallel_approvers(delays, p) or expected_outcome(delays, p) is None:
            _drop(ctx, ticket)
        return UnitResult(rows=issued)
    waits, who = sequential_plan(delays, p)
    _sleep_min(sum(waits), p)  # one reviewer after another: their waits add up
    if who is None:
        _drop(ctx, ticket)
        return UnitResult(rows=0)
    return UnitResult(rows=_issue(ctx, ticket, who))


# ---- checks ----

def verify(ctx: Context) -> list[Check]:
    p = ctx.params
    tickets = [u.id for u in units(ctx)]
    expected = {u.id: expected_outcome(u.payload, p) for u in units(ctx)}
    invoices = db.query(ctx, "SELECT ticket, count(*) FROM invoices GROUP BY ticket")
    outcomes = dict(db.query(ctx, "SELECT ticket, outcome FROM outcomes"))
    duplicates = sum(n - 1 for _, n in invoices)
    invoiced = {t for t, _ in invoices}
    should = {t for t, who in expected.items() if who is not None}
    dropped = sum(1 for t in tickets if t not in invoiced)
    recorded = sum(1 for t in tickets if t in outcomes)
    scaled = f"human minutes at {p['time_scale']:g} s each"
    return [
        Check("no invoice issued twice", 0, duplicates, duplicates == 0,
              f"{sum(n for _, n in invoices)} invoices for {len(invoiced)} tickets",
              metric="duplicates"),
        Check("tickets dropped as the model says", len(tickets) - len(should), dropped,
              dropped == len(tickets) - len(should) and invoiced == should,
              f"no approval within the {p['deadline_min']:g}-minute deadline ({scaled}); "
              f"{len(invoiced ^ should)} tickets differ from the model", metric="dropped"),
        Check("every ticket has an outcome", len(tickets), recorded, recorded == len(tickets)),
    ]


def bound(ctx: Context, executor: str) -> float:
    """The modelled waits alone: each ticket's sleeps (checks, humans, billing) spread over
    the cell's concurrency, and never less than any ticket's arrival plus its own sleeps."""
    p = ctx.params
    per = [_ticket_s(u.payload, p) for u in units(ctx)]
    step = p["arrival_min"] * p["time_scale"]
    arrivals = max((i * step + s for i, s in enumerate(per)), default=0.0)
    return max(arrivals, sum(per) / max(1, ctx.concurrency))


def _ticket_s(delays: Delays, p: dict) -> float:
    checks = p["checks"] * p["check_ms"] / 1000
    if p["strategy"] in PARALLEL:
        checks = min(checks, p["check_ms"] / 1000)
        waits = [d if _answers(d, p["timeout_min"]) else p["timeout_min"] for d in delays]
        return checks + max(waits, default=0.0) * p["time_scale"]
    if p["strategy"] == "hybrid":
        checks = min(checks, p["check_ms"] / 1000)
    waits, who = sequential_plan(delays, p)
    return checks + sum(waits) * p["time_scale"] + (p["invoice_ms"] / 1000 if who is not None
                                                   else 0.0)


def teardown(ctx: Context) -> None:
    close_worker(ctx)
    db.drop_kept_schema(ctx)
