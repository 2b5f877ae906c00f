"""lanes(slots, group): heavy units in a lane of their own, so they never hold every worker.

A size-aware hybrid: units whose ``group`` is the lane's group (``big`` unless named, e.g.
``lanes(1,monster)``) run at most ``slots`` at once, on slots no other unit takes; every
other unit runs on the remaining ``capacity - slots``, in arrival order. A policy sees only
``Unit`` objects, so the scenario says which units are heavy by their group: thumbnails
puts its monster files in ``group="big"``. The lanes are strict (an idle heavy slot is not
lent out): a small unit never waits behind a monster, and a monster never waits behind a
queue of small ones. With a capacity of 1 both lanes share the one slot.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from harness.policies import register
from harness.policies.base import Policy, PolicyError, parse_count
from harness.scenario import Unit


@register
class Lanes(Policy):
    name = "lanes"
    description = "heavy units (group 'big') in a lane of their own: lanes(slots,group)"
    simplicity = 2

    def __init__(self, capacity: int, slots: int = 1, group: str = "big"):
        super().__init__(capacity)
        self.slots, self.group = min(slots, self.capacity), group
        self._queues: dict[bool, deque[Unit]] = {True: deque(), False: deque()}
        self._running = {True: 0, False: 0}
        self._peak = {True: 0, False: 0}

    @classmethod
    def from_args(cls, args: list[str], defaults: dict[str, Any], capacity: int) -> "Lanes":
        if len(args) > 2:
            raise PolicyError(f"lanes takes (slots, group), got {','.join(args)!r}")
        slots = parse_count(args[0], "lanes: slots") if args else 1
        return cls(capacity, slots, args[1] if len(args) > 1 else "big")

    def label(self) -> str:
        return f"lanes({self.slots},{self.group})"

    def _limit(self, heavy: bool) -> int:
        if self.capacity == 1:
            return 1
        return self.slots if heavy else max(1, self.capacity - self.slots)

    def arrive(self, unit: Unit) -> None:
        self._queues[unit.group == self.group].append(unit)

    def next(self, now_ns: int) -> Unit | None:
        if sum(self._running.values()) >= self.capacity:
            return None
        for heavy in (False, True):
            if self._queues[heavy] and self._running[heavy] < self._limit(heavy):
                self._running[heavy] += 1
                self._peak[heavy] = max(self._peak[heavy], self._running[heavy])
                return self._queues[heavy].popleft()
        return None

    def finished(self, unit: Unit) -> None:
        self._running[unit.group == self.group] -= 1

    @property
    def pending(self) -> int:
        return len(self._queues[True]) + len(self._queues[False])

    def remaining(self) -> list[Unit]:
        units = [*self._queues[False], *self._queues[True]]
        for queue in self._queues.values():
            queue.clear()
        return units

    def info(self) -> dict[str, Any]:
        return {"lane_slots": self.slots, "lane_group": self.group,
                "peak_heavy": self._peak[True], "peak_other": self._peak[False]}
