"""adaptive(start, max): concurrency limits that find the cap by themselves, in the manner of
Netflix's concurrency-limits: one per group (a supplier) and one shared by all groups.

* **Per group** (:class:`~harness.policies.limits.Limit`): starts at ``start`` units at once
  and rises by ``1 / limit`` per clean unit (about one more per round of completions) while
  the group's smoothed service time stays within 1.5x its unloaded minimum. 429s (or 5xx) cut
  it by 0.9, a failed unit by 0.5, queueing in proportion (Gradient2's rule, 0.5-0.9); once
  per burst. The 429 cut is mild on purpose: a request in its back-off keeps its slot, so
  halving the limit leaves the supplier's tokens unused while it sleeps.
* **Shared** by every group, for a bottleneck they all queue on (one NAS, one database, the
  cores): the same rule on the service times of all groups' clean units, with a tighter
  tolerance (``SHARED_TOLERANCE``), starting at the sum of the groups' starts. Per-group
  limits alone each probe a step past a shared knee: ten groups probe ten steps (measured on
  csv_ingest nas: +52 % over the best fixed cap). A pushback is one supplier's word about
  itself and never cuts the shared limit; a failure does.

A unit may start when its group is under its own limit and all groups together are under the
shared one; a group with nothing running may always start one, so that no group is starved
by the others' load (the partition's guaranteed share in concurrency-limits' partitioned
limiter) and the shared limit can never do worse than one unit per group.

Both limits' trajectories go into the cell record (``info()["limit_trajectory"]`` per group,
``info()["shared_trajectory"]``) and the report plots them. Outcomes come from the records
the driver passes (``sees_records``); the policy never reads a clock: a record's own end time
stamps the trajectory.
"""

from __future__ import annotations

from typing import Any

from harness.outcomes import END, RETRIES, START, STATUS
from harness.policies import register
from harness.policies.base import PolicyError, parse_count
from harness.policies.groups import LimitedPolicy
from harness.policies.limits import Limit
from harness.scenario import Unit

SHARED_TOLERANCE = 1.25  # a shared knee is costlier to pass: every group queues behind it
MAX_TRAJECTORY = 5000  # points kept in the cell record (later changes are counted only)


@register
class Adaptive(LimitedPolicy):
    name = "adaptive"
    description = ("per-group AIMD concurrency limits under a shared one: rise while latency "
                   "stays low, cut on errors/429s/queueing")
    simplicity = 3
    params = (("start", "1"), ("max", "32"))
    sees_records = True

    def __init__(self, capacity: int, start: int = 1, maximum: int = 32):
        super().__init__(capacity)
        self.start, self.maximum = start, maximum
        self._limits: dict[str, Limit] = {}
        self._shared = Limit(0.0, tolerance=SHARED_TOLERANCE)
        self._trajectory: list[tuple[int, str, float]] = []
        self._shared_trajectory: list[tuple[int, float]] = []
        self._events = {"up": 0, "down": 0, "hold": 0}
        self._shared_events = {"up": 0, "down": 0, "hold": 0}

    @classmethod
    def from_args(cls, args: list[str], defaults: dict[str, Any], capacity: int) -> "Adaptive":
        if len(args) > 2:
            raise PolicyError(f"adaptive takes (start, max), got {','.join(args)!r}")
        start = parse_count(args[0], "adaptive: start") if args else 1
        maximum = parse_count(args[1], "adaptive: max") if len(args) > 1 else 32
        if maximum < start:
            raise PolicyError(f"adaptive: max ({maximum}) below start ({start})")
        return cls(capacity, start, maximum)

    def label(self) -> str:
        return f"adaptive({self.start},{self.maximum})"

    def arrive(self, unit: Unit) -> None:
        super().arrive(unit)
        if unit.group not in self._limits:
            self._limits[unit.group] = Limit(float(self.start))
            self._trajectory.append((0, unit.group, float(self.start)))
            # Each group brings its start to the shared limit: at first, no tighter than
            # the groups' own limits.
            self._shared.limit += self.start
            self._shared_trajectory.append((0, self._shared.limit))

    def allowed(self, group: str, index: int, now_ns: int) -> bool:
        running = self._running[group]
        if running == 0:
            return True  # a group's guaranteed share: one unit, whatever the others' load
        return running < int(self._limits[group].limit) \
            and self._in_flight < int(self._shared.limit)

    def finished(self, unit: Unit, record: tuple[Any, ...] | None = None) -> None:
        # Counted before the decrement: the unit that finished was part of the load.
        group_busy = self._running[unit.group] >= self._limits[unit.group].limit / 2
        shared_busy = self._in_flight >= self._shared.limit / 2
        super().finished(unit, record)
        if record is None or record[STATUS] == "not-run":
            return
        retries = record[RETRIES] or {}
        pushed_back = bool(retries.get("429")) or bool(retries.get("5xx"))
        failed = record[STATUS] != "ok"
        state, before = self._limits[unit.group], self._limits[unit.group].limit
        event = state.observe(record[START], record[END], self.maximum, pushed_back, failed,
                              busy=group_busy)
        self._events[event] += 1
        if state.limit != before and len(self._trajectory) < MAX_TRAJECTORY:
            self._trajectory.append((int(record[END]), unit.group, round(state.limit, 3)))
        if not pushed_back:  # a back-off's sleep is no queueing at the shared bottleneck
            self._observe_shared(record, failed, shared_busy)

    def _observe_shared(self, record: tuple[Any, ...], failed: bool, busy: bool) -> None:
        before = self._shared.limit
        ceiling = min(self.capacity, self.maximum * len(self._limits))
        event = self._shared.observe(record[START], record[END], ceiling, failed=failed,
                                     busy=busy)
        self._shared_events[event] += 1
        if self._shared.limit != before and len(self._shared_trajectory) < MAX_TRAJECTORY:
            self._shared_trajectory.append((int(record[END]), round(self._shared.limit, 3)))

    def info(self) -> dict[str, Any]:
        finals = {g: round(s.limit, 3) for g, s in self._limits.items()}
        return {"adaptive_start": self.start, "adaptive_max": self.maximum,
                "groups": len(self._groups.order), "limit_final": finals,
                "limit_events": dict(self._events),
                "limit_trajectory": [list(point) for point in self._trajectory],
                "shared_limit_final": round(self._shared.limit, 3),
                "shared_events": dict(self._shared_events),
                "shared_trajectory": [list(point) for point in self._shared_trajectory]}
