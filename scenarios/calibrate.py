"""calibrate: units of known cost, so every mode's makespan has an exact theoretical value.

I/O-like units sleep (a stand-in for a remote call, on purpose: the point is a known
duration); CPU-like units spin until their own thread has used the given CPU time, so
they cost exactly that much CPU whatever the scheduling. ``bound`` returns the theoretical
makespan for the mode (simulating the grouped dispatcher exactly), which is how the harness
proves its own measurements right: efficiency near 1.0 in every mode.

Each unit leaves a receipt file (created exclusively), so ``verify`` can prove every unit
ran exactly once. Fault-injection parameters exist to test the harness itself.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import shutil
import threading
import time
from pathlib import Path

from harness.scenario import Check, Context, Param, Unit, UnitResult

NAME = "calibrate"
DESCRIPTION = "units of known cost (sleep or CPU spin) in groups; exact theoretical makespans"

PARAMS = (
    Param("units", 240, "number of units", minimum=1),
    Param("groups", 4, "number of groups (units are split into contiguous blocks)", minimum=1),
    Param("cost_ms", 10.0, "cost of one unit in milliseconds", minimum=0.0),
    Param("kind", "io", "io: sleep (remote delay); cpu: spin on the thread's CPU clock",
          choices=("io", "cpu")),
    Param("receipts", True, "write one receipt file per unit so verify can count them"),
    Param("fail_every", 0, "test hook: every Nth unit raises (0 = never)", minimum=0),
    Param("crash_at", -1, "test hook: the cell process dies at this unit index (-1 = never)"),
    Param("alloc_mb", 0.0, "test hook: each unit keeps this many MB alive", minimum=0.0),
    Param("lock_fraction", 0.0, "io: each unit holds one shared lock exclusively for this "
          "fraction of its cost, stopping every other unit meanwhile (Amdahl's serial "
          "fraction: the sweep's USL fit must recover it as sigma); one interpreter's lock, "
          "so serial, threads and asyncio only", minimum=0.0, maximum=1.0),
)

_kept: list[bytearray] = []  # alloc_mb test hook: memory that grows with every unit


def units(ctx: Context) -> list[Unit]:
    n, groups = ctx.params["units"], ctx.params["groups"]
    per_group = math.ceil(n / groups)
    return [Unit(id=f"u{i:06d}", group=f"g{i // per_group:02d}", payload=i) for i in range(n)]


def _receipts_dir(ctx: Context) -> Path:
    return ctx.work_dir / "receipts" / ctx.cell_id


def reset(ctx: Context) -> None:
    folder = _receipts_dir(ctx)
    if folder.exists():
        shutil.rmtree(folder)  # a cell counts only its own receipts
    if ctx.params["receipts"]:
        folder.mkdir(parents=True)


def _spin(seconds: float) -> None:
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def _hooks(unit: Unit, ctx: Context) -> None:
    index = unit.payload
    if ctx.params["crash_at"] == index:
        os._exit(70)  # simulates a hard crash (segfault, OOM kill) of the cell process
    if ctx.params["alloc_mb"]:
        _kept.append(bytearray(os.urandom(1) * int(ctx.params["alloc_mb"] * 2**20)))
    if _fails(index, ctx):
        raise RuntimeError(f"injected failure at unit {index}")


def _receipt(unit: Unit, ctx: Context) -> None:
    if ctx.params["receipts"]:
        # O_EXCL: a unit executed twice fails loudly instead of silently double-counting.
        fd = os.open(_receipts_dir(ctx) / unit.id, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)


class _StopTheWorld:
    """A shared lock with Amdahl's semantics: while one unit holds it exclusively no other unit
    progresses. The parallel part runs in short slices, each admitted only when no one holds or
    waits for the lock (writer preference); a holder claims it, lets the slices in flight finish
    (at most SLICE_S, counted in its held time) and holds it alone for the rest."""

    SLICE_S = 0.001

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._exclusive = False
        self._waiting = 0
        self._active = 0  # parallel slices sleeping now

    def parallel(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            with self._cond:
                while self._exclusive or self._waiting:
                    paused = time.perf_counter()
                    self._cond.wait()
                    end += time.perf_counter() - paused  # no progress while the world stops
                self._active += 1
            try:
                time.sleep(min(self.SLICE_S, max(0.0, end - time.perf_counter())))
            finally:
                with self._cond:
                    self._active -= 1
                    if self._exclusive and not self._active:  # only a draining holder waits
                        self._cond.notify_all()

    def exclusive(self, seconds: float) -> None:
        with self._cond:
            self._waiting += 1
            while self._exclusive:
                self._cond.wait()
            self._waiting -= 1
            self._exclusive = True  # claimed: no other holder, no new slice from here
            drain = time.perf_counter()
            while self._active:  # slices in flight finish first (at most SLICE_S)
                self._cond.wait()
            drain = time.perf_counter() - drain
        try:
            # The world stopped when the drain began (no new slice starts), so the drain counts
            # towards the held time: a holder neither waits on nor gives away parallel work.
            time.sleep(max(0.0, seconds - drain))
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


_world = _StopTheWorld()


def _locked(seconds: float, fraction: float) -> None:
    _world.parallel(seconds * (1 - fraction))
    _world.exclusive(seconds * fraction)


def work(unit: Unit, ctx: Context) -> UnitResult:
    _hooks(unit, ctx)
    seconds = ctx.params["cost_ms"] / 1000
    if ctx.params["kind"] == "io" and ctx.params["lock_fraction"]:
        _locked(seconds, ctx.params["lock_fraction"])
    elif ctx.params["kind"] == "io":
        time.sleep(seconds)
    else:
        _spin(seconds)
    _receipt(unit, ctx)
    return UnitResult(rows=1)


async def awork(unit: Unit, ctx: Context) -> UnitResult:
    _hooks(unit, ctx)
    seconds = ctx.params["cost_ms"] / 1000
    if ctx.params["kind"] == "io" and ctx.params["lock_fraction"]:
        await asyncio.to_thread(_locked, seconds, ctx.params["lock_fraction"])
    elif ctx.params["kind"] == "io":
        await asyncio.sleep(seconds)
    else:
        _spin(seconds)  # CPU work blocks the event loop, as it would in real code
    _receipt(unit, ctx)
    return UnitResult(rows=1)


def verify(ctx: Context) -> list[Check]:
    if not ctx.params["receipts"]:
        return []
    folder = _receipts_dir(ctx)
    landed = len(os.listdir(folder)) if folder.exists() else 0
    expected = ctx.params["units"]
    every = ctx.params["fail_every"]
    if every:
        expected -= expected // every
    return [Check("units executed exactly once", expected, landed, landed == expected,
                  "receipt files created with O_EXCL, one per unit")]


def _fails(index: int, ctx: Context) -> bool:
    every = ctx.params["fail_every"]
    return bool(every) and (index + 1) % every == 0


def group_sizes(ctx: Context) -> list[int]:
    """Units per group that cost their full time (an injected failure raises at once)."""
    sizes: dict[str, int] = {}
    for unit in units(ctx):
        sizes[unit.group] = sizes.get(unit.group, 0) + (not _fails(unit.payload, ctx))
    return list(sizes.values())


def simulate_grouped(sizes: list[int], cost: float, cap: int, stagger: float,
                     workers: int) -> float:
    """Makespan of the grouped dispatcher (same round-robin rule) with equal unit costs."""
    remaining, running = list(sizes), [0] * len(sizes)
    free, cursor, t = workers, 0, 0.0
    ends: list[tuple[float, int]] = []
    while any(remaining) or ends:
        while free:
            picked = None
            for step in range(len(sizes)):
                g = (cursor + step) % len(sizes)
                if remaining[g] and g * stagger <= t + 1e-12 and running[g] < cap:
                    picked, cursor = g, (cursor + step + 1) % len(sizes)
                    break
            if picked is None:
                break
            remaining[picked] -= 1
            running[picked] += 1
            free -= 1
            heapq.heappush(ends, (t + cost, picked))
        releases = [g * stagger for g in range(len(sizes)) if remaining[g] and g * stagger > t]
        t = min(releases + [ends[0][0]] if ends else releases)
        while ends and ends[0][0] <= t + 1e-12:
            _, g = heapq.heappop(ends)
            running[g] -= 1
            free += 1
    return t


def bound(ctx: Context, executor: str) -> float:
    """Theoretical makespan of ``executor`` under the cell's policy (a lower bound:
    dispatch overhead is not in it)."""
    cost = ctx.params["cost_ms"] / 1000
    n = sum(group_sizes(ctx))  # failing units raise before their cost: they add nothing
    workers = max(1, ctx.workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = ctx.params["kind"] == "cpu"
    # Threads, the event loop and a loop share one interpreter: CPU-like work is serialized
    # by the GIL; worker processes are limited by the cores.
    one_interpreter = executor in ("serial", "threads", "asyncio")
    cpu_floor = n * cost if one_interpreter else n * cost / min(workers, cores or 1)
    # The lock is one interpreter's: worker processes each hold their own, never shared.
    fraction = ctx.params["lock_fraction"] if not cpu and one_interpreter else 0.0
    if fraction:
        # One interpreter shares the lock: its parts are serial and stop everyone else, the
        # rest runs at most ``workers`` at a time (Amdahl's law).
        parallel = min(workers, n or 1)
        # A drain (slices in flight finishing as a holder starts) counts as held time while
        # some parallel work still progresses: at most SLICE_S per unit off the exact value.
        drains = n * _StopTheWorld.SLICE_S if parallel > 1 else 0.0
        cpu_floor = max(cost, n * cost * (fraction + (1 - fraction) / parallel) - drains)
    if ctx.extra.get("policy") == "capped":
        options = ctx.extra.get("policy_options", {})
        span = simulate_grouped(group_sizes(ctx), cost, options.get("group_cap", 3),
                                options.get("stagger_s", 0.2), workers)
    else:
        span = math.ceil(n / workers) * cost
    return max(span, cpu_floor) if cpu or fraction else span
