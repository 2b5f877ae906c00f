"""fanout(workers, handlers): the naive parallel pipeline, as the article built it.

``workers`` group workers each take a group (a supplier) and fan out to ``handlers`` file
handlers at once; a worker moves to the next group only when its group is done. No stagger,
no per-supplier gentleness: the default, 20 x 500, hands out every file of the article's
10,000 at once. Give the executor the capacity (``threads[10000]+fanout``) or the executor's
pool is what actually caps it; the label says both.
"""

from __future__ import annotations

from typing import Any

from harness.policies import register
from harness.policies.base import PolicyError, parse_count
from harness.policies.groups import LimitedPolicy
from harness.scenario import Unit


@register
class Fanout(LimitedPolicy):
    name = "fanout"
    description = "naive fan-out: W group workers x M handlers each, all at once: fanout(W,M)"
    simplicity = 1
    params = (("group_workers", "20"), ("handlers", "500"))

    def __init__(self, capacity: int, workers: int = 20, handlers: int = 500):
        super().__init__(capacity)
        self.workers, self.handlers = workers, handlers
        self._active: set[str] = set()    # groups a worker holds (started, not yet done)

    @classmethod
    def from_args(cls, args: list[str], defaults: dict[str, Any], capacity: int) -> "Fanout":
        if len(args) > 2:
            raise PolicyError(f"fanout takes (workers, handlers), got {','.join(args)!r}")
        workers = parse_count(args[0], "fanout: workers") if args else 20
        handlers = parse_count(args[1], "fanout: handlers") if len(args) > 1 else 500
        return cls(capacity, workers, handlers)

    def label(self) -> str:
        return f"fanout({self.workers},{self.handlers})"

    def allowed(self, group: str, index: int, now_ns: int) -> bool:
        if group in self._active:
            return self._running[group] < self.handlers
        return len(self._active) < self.workers

    def next(self, now_ns: int) -> Unit | None:
        unit = super().next(now_ns)
        if unit is not None:
            self._active.add(unit.group)
        return unit

    def finished(self, unit: Unit, record: tuple[Any, ...] | None = None) -> None:
        super().finished(unit, record)
        if not self._running[unit.group] and not self._groups.queues[unit.group]:
            self._active.discard(unit.group)  # this worker is free for the next group

    def info(self) -> dict[str, Any]:
        return {"fanout_workers": self.workers, "fanout_handlers": self.handlers,
                "groups": len(self._groups.order), "peak_in_flight": self._peak}
