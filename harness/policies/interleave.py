"""interleave: round-robin across groups, no cap: the control for ``capped``.

Scenarios list their units group by group (a pipeline's files supplier by supplier), so
a plain pool works through one group at a time. ``capped`` both reorders and caps;
``interleave`` only reorders, so a table that has both tells what the cap buys apart from
what the order buys.
"""

from __future__ import annotations

from harness.policies import register
from harness.policies.groups import GroupedPolicy
from harness.scenario import Unit


@register
class Interleave(GroupedPolicy):
    name = "interleave"
    description = "round-robin across groups, every unit handed out when due"
    simplicity = 1

    def next(self, now_ns: int) -> Unit | None:
        return self._groups.take(lambda group, index: True)
