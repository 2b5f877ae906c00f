"""grouped: the capped hybrid. At most ``--group-cap`` units of one group run at once,
groups start ``--stagger`` seconds apart, all over a bounded pool of ``--workers`` threads.

This is the shape that fixed the 10,000-file supplier pipeline: parallel across suppliers,
gentle on each one. A unit's intended start is its group's release time, so its latency
includes the time it queued behind the cap (no coordinated omission).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.discovery import LoadedScenario
from harness.modes import register
from harness.modes.base import Execution, Mode, ModeOptions
from harness.scenario import Unit


def group_queues(units: list[Unit]) -> dict[str, deque[Unit]]:
    """Units per group, groups in order of first appearance."""
    queues: dict[str, deque[Unit]] = {}
    for unit in units:
        queues.setdefault(unit.group, deque()).append(unit)
    return queues


@register
class GroupedMode(Mode):
    name = "grouped"
    description = "per-group cap (--group-cap) with staggered group starts (--stagger)"
    simplicity = 1

    def label(self, scenario: LoadedScenario, options: ModeOptions) -> str:
        return f"grouped(cap={options.group_cap},stagger={options.stagger_s * 1000:g}ms)"

    def run(self, ex: Execution) -> dict[str, Any]:
        opts = ex.options
        queues = group_queues(ex.units)
        order = list(queues)
        stagger_ns = int(opts.stagger_s * 1e9)
        release = {g: i * stagger_ns for i, g in enumerate(order)}
        running = dict.fromkeys(order, 0)
        free_workers = opts.workers
        changed = threading.Condition()
        peak = dict.fromkeys(order, 0)

        def finished(group: str) -> None:
            nonlocal free_workers
            with changed:
                running[group] -= 1
                free_workers += 1
                changed.notify()

        def execute(unit: Unit, intended: int) -> None:
            try:
                ex.run_unit(unit, intended)
            finally:
                finished(unit.group)

        cursor = 0  # round-robin position, so no released group starves
        with ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="harness-unit") as pool:
            with changed:
                while any(queues.values()):
                    now = ex.now_ns()
                    picked = None
                    if free_workers > 0:
                        for step in range(len(order)):
                            g = order[(cursor + step) % len(order)]
                            if queues[g] and release[g] <= now and running[g] < opts.group_cap:
                                picked = g
                                cursor = (cursor + step + 1) % len(order)
                                break
                    if picked is None:
                        upcoming = [release[g] for g in order if queues[g] and release[g] > now]
                        timeout = (min(upcoming) - now) / 1e9 if upcoming else None
                        changed.wait(timeout)
                        continue
                    running[picked] += 1
                    peak[picked] = max(peak[picked], running[picked])
                    free_workers -= 1
                    pool.submit(execute, queues[picked].popleft(), release[picked])
        return {"workers": opts.workers, "group_cap": opts.group_cap,
                "stagger_s": opts.stagger_s, "groups": len(order),
                "peak_per_group": max(peak.values(), default=0)}
