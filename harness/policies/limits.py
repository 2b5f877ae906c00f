"""One concurrency limit that learns from finished units: additive increase while service
time stays near its unloaded minimum, multiplicative decrease on pushback, failures or
queueing, in the manner of Netflix's concurrency-limits (its AIMD limit with Gradient2's
latency rule). The adaptive policy keeps one per group and one over all groups.

A limit never reads a clock: a unit's start and end come from its record.
"""

from __future__ import annotations

import math

SMOOTHING = 0.3       # weight of the newest service time in the average
TOLERANCE = 1.5       # service time above this multiple of the minimum counts as queueing
BACKOFF = 0.9         # multiplicative decrease on 429s (Netflix's AIMD ratio)
ERROR_BACKOFF = 0.5   # ... on a failed unit, a harder signal than a pushback; the deepest cut


class Limit:
    """A limit and what it has seen: the smoothed service time of clean units (an EWMA, so
    that one tiny file does not set the baseline nor one huge file read as queueing), its
    lowest value (the unloaded minimum), and the end of the unit that caused the last cut."""

    def __init__(self, start: float, tolerance: float = TOLERANCE):
        self.limit = float(start)
        self.tolerance = tolerance
        self.smoothed_ns: float | None = None
        self.min_service_ns: float | None = None
        self.cut_at_ns = -1

    def observe(self, start_ns: int, end_ns: int, ceiling: float, pushed_back: bool = False,
                failed: bool = False, busy: bool = True) -> str:
        """Adjust to one finished unit; what happened: "up", "down" or "hold".

        ``busy`` says the limit was in use when the unit finished (Netflix's app-limited
        check): a limit nobody reaches learns nothing by rising, and would only have further
        to fall when the load comes."""
        bad = pushed_back or failed
        if not bad or self.smoothed_ns is None:
            self._sample(max(0, end_ns - start_ns))
        slow = self.smoothed_ns > self.tolerance * self.min_service_ns
        if bad or slow:
            if start_ns < self.cut_at_ns:
                return "hold"  # started before the last cut: the same congestion, seen late
            self.limit = max(1.0, self.limit * self._ratio(pushed_back, failed))
            self.cut_at_ns = end_ns
            return "down"
        if not busy or self.limit >= ceiling:
            return "hold"
        # Additive increase, about one more per round of completions. No slow start: with a
        # few dozen units per group, doubling overshoots into the congestion it then has to
        # drain (measured on csv_ingest nas: 40 % slower than the best fixed cap).
        self.limit = min(float(ceiling), self.limit + 1.0 / self.limit)
        return "up"

    def _sample(self, service_ns: int) -> None:
        self.smoothed_ns = float(service_ns) if self.smoothed_ns is None \
            else SMOOTHING * service_ns + (1 - SMOOTHING) * self.smoothed_ns
        self.min_service_ns = max(1.0, min(self.min_service_ns or math.inf, self.smoothed_ns))

    def _ratio(self, pushed_back: bool, failed: bool) -> float:
        if failed:
            return ERROR_BACKOFF
        if pushed_back:
            return BACKOFF
        # Queueing (Gradient2's rule): cut in proportion to how far service time grew past
        # the tolerated multiple of its minimum, never by more than half.
        gradient = self.tolerance * (self.min_service_ns or 1.0) / max(1.0, self.smoothed_ns or 1.0)
        return max(ERROR_BACKOFF, min(BACKOFF, gradient))
