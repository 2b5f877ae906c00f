"""capped(cap, stagger): the article's hybrid. At most ``cap`` units of one group run at
once, groups start ``stagger`` apart (in order of first arrival), served round-robin.

This is the shape that fixed the 10,000-file supplier pipeline: parallel across
suppliers, gentle on each one. Units stay due at t0 (batch arrival), so a unit's latency
includes the time it waited for its group's start and behind the cap.
"""

from __future__ import annotations

from typing import Any

from harness.policies import register
from harness.policies.base import PolicyError, parse_count, parse_seconds
from harness.policies.groups import LimitedPolicy
from harness.scenario import Unit


@register
class Capped(LimitedPolicy):
    name = "capped"
    description = "per-group cap with staggered group starts: capped(cap,stagger)"
    simplicity = 2
    params = (("cap", "3"), ("stagger", "200ms"))

    def __init__(self, capacity: int, cap: int = 3, stagger_s: float = 0.2):
        super().__init__(capacity)
        self.cap, self.stagger_ns = cap, int(stagger_s * 1e9)
        self._group_peak: dict[str, int] = {}

    @classmethod
    def from_args(cls, args: list[str], defaults: dict[str, Any], capacity: int) -> "Capped":
        if len(args) > 2:
            raise PolicyError(f"capped takes (cap, stagger), got {','.join(args)!r}")
        cap = parse_count(args[0], "capped: cap") if args else defaults.get("group_cap", 3)
        stagger = (parse_seconds(args[1], "capped: stagger") if len(args) > 1
                   else defaults.get("stagger_s", 0.2))
        return cls(capacity, cap, stagger)

    def label(self) -> str:
        return f"capped({self.cap},{self.stagger_ns / 1e6:g}ms)"

    def allowed(self, group: str, index: int, now_ns: int) -> bool:
        return index * self.stagger_ns <= now_ns and self._running[group] < self.cap

    def next(self, now_ns: int) -> Unit | None:
        unit = super().next(now_ns)
        if unit is not None:
            group = unit.group
            self._group_peak[group] = max(self._group_peak.get(group, 0), self._running[group])
        return unit

    def wake_at(self, now_ns: int) -> int | None:
        starts = [i * self.stagger_ns for i, g in enumerate(self._groups.order)
                  if self._groups.queues[g] and i * self.stagger_ns > now_ns]
        return min(starts) if starts else None

    def info(self) -> dict[str, Any]:
        return {"group_cap": self.cap, "stagger_s": self.stagger_ns / 1e9,
                "groups": len(self._groups.order),
                "peak_per_group": max(self._group_peak.values(), default=0)}
