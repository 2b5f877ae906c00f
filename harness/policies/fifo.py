"""fifo: every unit handed out as soon as it is due, in the order the scenario lists them."""

from __future__ import annotations

from collections import deque

from harness.policies import register
from harness.policies.base import Policy
from harness.scenario import Unit


@register
class Fifo(Policy):
    name = "fifo"
    description = "the scenario's order, every unit handed out when due (the executor queues)"
    simplicity = 0

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._queue: deque[Unit] = deque()

    def label(self) -> str:
        return ""  # the plain order needs no name: "threads[8]"

    def arrive(self, unit: Unit) -> None:
        self._queue.append(unit)

    def next(self, now_ns: int) -> Unit | None:
        return self._queue.popleft() if self._queue else None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def remaining(self) -> list[Unit]:
        units = list(self._queue)
        self._queue.clear()
        return units
