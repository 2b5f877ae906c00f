"""adaptive(start, max): a per-group concurrency limit that finds the cap by itself, in the
manner of Netflix's concurrency-limits (its AIMD limit with a latency threshold).

Each group (a supplier) starts at ``start`` units at once. Each clean unit updates the
group's smoothed service time (an EWMA, so that one tiny file does not set the baseline nor
one huge file read as queueing) and its unloaded minimum (the lowest that average has been).
While the average stays within ``TOLERANCE`` x the minimum, every clean unit raises the limit
by ``1 / limit`` (about one more unit per round of completions: additive increase). A unit
that met 429s (or 5xx) multiplies it by ``BACKOFF`` (0.9), queueing (the average past the
tolerance) by ``TOLERANCE x minimum / average`` within 0.5-0.9 (Gradient2's rule), a failed
unit by ``ERROR_BACKOFF`` (0.5); once per burst: units that started before the last cut do
not cut again. The 429 cut is mild on purpose: a request in its back-off keeps its slot, so
halving the limit leaves the supplier's tokens unused while it sleeps.
The limit's trajectory goes into the cell record (``info()["limit_trajectory"]``) and the
report plots it.

Outcomes come from the records the driver passes (``sees_records``); the policy still never
reads a clock: a record's own end time stamps the trajectory.
"""

from __future__ import annotations

import math
from typing import Any

from harness.outcomes import END, START, STATUS
from harness.policies import register
from harness.policies.base import PolicyError, parse_count
from harness.policies.groups import LimitedPolicy
from harness.scenario import Unit

RETRIES = 12          # index of the retries-by-cause dict in a record tuple
SMOOTHING = 0.3      # weight of the newest service time in the group's average
TOLERANCE = 1.5       # service time above this multiple of the minimum counts as queueing
BACKOFF = 0.9         # multiplicative decrease on 429s or latency growth (Netflix's AIMD ratio)
ERROR_BACKOFF = 0.5   # ... and on a failed unit, a harder signal than a pushback
MAX_TRAJECTORY = 5000  # points kept in the cell record (later changes are counted only)


class _Limit:
    """One group's limit and what it has seen."""

    def __init__(self, start: float):
        self.limit = start
        self.smoothed_ns: float | None = None    # EWMA of clean service times
        self.min_service_ns: float | None = None  # its lowest value: the unloaded minimum
        self.cut_at_ns = -1  # end of the unit that caused the last decrease

    def observe(self, start_ns: int, end_ns: int, pushed_back: bool, ceiling: int,
                failed: bool = False) -> str:
        """Adjust to one finished unit; what happened: "up", "down" or "hold"."""
        service_ns = max(0, end_ns - start_ns)
        bad = pushed_back or failed
        if not bad or self.smoothed_ns is None:
            # Smoothed, so that one tiny file does not set the minimum nor one huge file read
            # as queueing (files differ in size 20-fold; load shows in the average).
            self.smoothed_ns = service_ns if self.smoothed_ns is None \
                else SMOOTHING * service_ns + (1 - SMOOTHING) * self.smoothed_ns
            self.min_service_ns = max(1.0, min(self.min_service_ns or math.inf, self.smoothed_ns))
        slow = self.smoothed_ns > TOLERANCE * self.min_service_ns
        if bad or slow:
            if start_ns < self.cut_at_ns:
                return "hold"  # started before the last cut: the same congestion, seen late
            self.limit = max(1.0, self.limit * self._ratio(pushed_back, failed))
            self.cut_at_ns = end_ns
            return "down"
        # Additive increase, about one more per round of completions. No slow start: with a
        # few dozen units per group, doubling overshoots into the congestion it then has to
        # drain (measured on csv_ingest nas: 40 % slower than the best fixed cap).
        self.limit = min(float(ceiling), self.limit + 1.0 / self.limit)
        return "up"

    def _ratio(self, pushed_back: bool, failed: bool) -> float:
        if failed:
            return ERROR_BACKOFF
        if pushed_back:
            return BACKOFF
        # Queueing (Gradient2's rule): cut in proportion to how far service time grew past
        # the tolerated multiple of its minimum, never by more than half.
        gradient = TOLERANCE * (self.min_service_ns or 1.0) / max(1.0, self.smoothed_ns or 1.0)
        return max(ERROR_BACKOFF, min(BACKOFF, gradient))


@register
class Adaptive(LimitedPolicy):
    name = "adaptive"
    description = "per-group AIMD concurrency limit: rises while latency stays low, cuts on errors/429s"
    simplicity = 3
    params = (("start", "1"), ("max", "32"))
    sees_records = True

    def __init__(self, capacity: int, start: int = 1, maximum: int = 32):
        super().__init__(capacity)
        self.start, self.maximum = start, maximum
        self._limits: dict[str, _Limit] = {}
        self._trajectory: list[tuple[int, str, float]] = []
        self._events = {"up": 0, "down": 0, "hold": 0}

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
            self._limits[unit.group] = _Limit(float(self.start))
            self._trajectory.append((0, unit.group, float(self.start)))

    def allowed(self, group: str, index: int, now_ns: int) -> bool:
        return self._running[group] < int(self._limits[group].limit)

    def finished(self, unit: Unit, record: tuple[Any, ...] | None = None) -> None:
        super().finished(unit, record)
        state = self._limits[unit.group]
        if record is None or record[STATUS] == "not-run":
            return
        retries = record[RETRIES] or {}
        pushed_back = bool(retries.get("429")) or bool(retries.get("5xx"))
        before = state.limit
        event = state.observe(record[START], record[END], pushed_back, self.maximum,
                              failed=record[STATUS] != "ok")
        self._events[event] += 1
        if state.limit != before and len(self._trajectory) < MAX_TRAJECTORY:
            self._trajectory.append((int(record[END]), unit.group, round(state.limit, 3)))

    def info(self) -> dict[str, Any]:
        finals = {g: round(s.limit, 3) for g, s in self._limits.items()}
        return {"adaptive_start": self.start, "adaptive_max": self.maximum,
                "groups": len(self._groups.order), "limit_final": finals,
                "limit_events": dict(self._events),
                "limit_trajectory": [list(point) for point in self._trajectory]}
