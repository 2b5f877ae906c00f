"""interleave: round-robin across groups, no cap: the control for ``capped``.

Scenarios list their units group by group (a pipeline's files supplier by supplier), so
a plain pool works through one group at a time. ``capped`` both reorders and caps;
``interleave`` only reorders, so a table that has both tells what the cap buys apart from
what the order buys.
"""

from __future__ import annotations

from harness.policies import register
from harness.policies.base import Policy
from harness.policies.groups import GroupQueues
from harness.scenario import Unit


@register
class Interleave(Policy):
    name = "interleave"
    description = "round-robin across groups, every unit handed out when due"
    simplicity = 1

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._groups = GroupQueues()

    def arrive(self, unit: Unit) -> None:
        self._groups.add(unit)

    def next(self, now_ns: int) -> Unit | None:
        return self._groups.take(lambda group, index: True)

    @property
    def pending(self) -> int:
        return self._groups.queued

    def remaining(self) -> list[Unit]:
        return self._groups.drain()
