"""overhead: units of known cost for measuring the harness's own overhead (tests/perf).

The benchmarks run this file through the real runner and call the very same ``work``
(imported from here) in a bare loop or a raw ``concurrent.futures`` pool, so the only
difference between the two timings is the harness.
"""

from __future__ import annotations

import time

from harness.scenario import Context, Param, Unit

NAME = "overhead"
DESCRIPTION = "units of known cost (CPU spin or sleep) for the harness-overhead benchmarks"

PARAMS = (
    Param("kind", "cpu", "cpu: spin on the thread's CPU clock; sleep: a remote delay",
          choices=("cpu", "sleep")),
    Param("cost_us", 100.0, "cost of one unit in microseconds", minimum=0.0),
    Param("units", 1000, "number of units", minimum=1),
)


def units(ctx: Context) -> list[Unit]:
    return [Unit(id=f"u{i:06d}", payload=i) for i in range(ctx.params["units"])]


def spin(seconds: float) -> None:
    """Burn ``seconds`` of this thread's CPU time (real work, whatever the scheduling)."""
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def work(unit: Unit, ctx: Context) -> None:
    seconds = ctx.params["cost_us"] / 1e6
    if ctx.params["kind"] == "cpu":
        spin(seconds)
    else:
        time.sleep(seconds)  # models a remote call's delay, on purpose: its cost is known
