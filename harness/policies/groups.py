"""Per-group queues served round-robin: the shared core of interleave and capped."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from harness.policies.base import Policy
from harness.scenario import Unit


class GroupQueues:
    """Units queued per group, groups in order of first arrival, served round-robin from
    a cursor so that no group starves."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[Unit]] = {}
        self.order: list[str] = []
        self._cursor = 0
        self.queued = 0

    def add(self, unit: Unit) -> None:
        queue = self.queues.get(unit.group)
        if queue is None:
            queue = self.queues[unit.group] = deque()
            self.order.append(unit.group)
        queue.append(unit)
        self.queued += 1

    def take(self, allowed: Callable[[str, int], bool]) -> Unit | None:
        """Pop the next unit of the first group from the cursor that has one and that
        ``allowed(group, index)`` admits; move the cursor past it."""
        count = len(self.order)
        for step in range(count):
            index = (self._cursor + step) % count
            group = self.order[index]
            if self.queues[group] and allowed(group, index):
                self._cursor = (index + 1) % count
                self.queued -= 1
                return self.queues[group].popleft()
        return None

    def drain(self) -> list[Unit]:
        units = [u for g in self.order for u in self.queues[g]]
        for queue in self.queues.values():
            queue.clear()
        self.queued = 0
        return units


class GroupedPolicy(Policy):
    """A policy that queues units per group (interleave, capped, fanout, adaptive): the
    queue, what waits in it and what a stop leaves behind."""

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._groups = GroupQueues()

    def arrive(self, unit: Unit) -> None:
        self._groups.add(unit)

    @property
    def pending(self) -> int:
        return self._groups.queued

    def remaining(self) -> list[Unit]:
        return self._groups.drain()


class LimitedPolicy(GroupedPolicy):
    """A grouped policy that limits how many units run at once (capped, fanout, adaptive):
    it counts running units per group and in all, and never exceeds the executor's capacity.
    Subclasses say which group may start one more in ``allowed(group, index, now_ns)``."""

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._running: dict[str, int] = {}
        self._in_flight = 0
        self._peak = 0

    def arrive(self, unit: Unit) -> None:
        super().arrive(unit)
        self._running.setdefault(unit.group, 0)

    def allowed(self, group: str, index: int, now_ns: int) -> bool:
        raise NotImplementedError

    def next(self, now_ns: int) -> Unit | None:
        if self._in_flight >= self.capacity:
            return None
        unit = self._groups.take(lambda group, index: self.allowed(group, index, now_ns))
        if unit is not None:
            self._running[unit.group] += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        return unit

    def finished(self, unit: Unit, record: tuple[Any, ...] | None = None) -> None:
        self._running[unit.group] -= 1
        self._in_flight -= 1
