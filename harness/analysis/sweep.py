"""A concurrency sweep: which points to run (adaptive search), what each point measured, and
what the series says (USL fit, N*, onset of errors, the recommended concurrency).

A sweep varies knobs of one mode: ``workers`` (the executor's) or a policy argument
(``cap``, ``stagger``, ... as the policy names them in ``params``). One knob may be a range
(``workers=1..256``), searched adaptively; the others are lists (``stagger=0,100,200ms``), each
combination a series of its own. The search doubles from the low end until throughput has
clearly passed its peak or errors take over, then bisects (geometrically) between the best
clean point and its better neighbour, so 1..256 costs about 10 points.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.usl import UslFit, fit_usl
from harness.config import ConfigError

MIN_BISECT_RATIO = 1.4   # neighbours closer than this are not bisected further
RECOMMEND_WITHIN = 0.05  # the smallest concurrency within 5 % of the best clean throughput
_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")


class SweepError(ConfigError):
    """A --vary argument is wrong; the message names it."""


@dataclass(frozen=True)
class Knob:
    """One varied knob: a searched integer range (``lo..hi``) or a list of values."""

    name: str
    values: tuple[str, ...] = ()
    lo: int | None = None
    hi: int | None = None

    @property
    def is_range(self) -> bool:
        return self.lo is not None

    @classmethod
    def parse(cls, text: str) -> "Knob":
        """``workers=1..256`` or ``stagger=0,100,200ms`` (a trailing unit applies to all)."""
        name, sep, spec = text.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise SweepError(f"--vary {text!r}: expected NAME=LO..HI or NAME=A,B,C")
        match = _RANGE.match(spec)
        if match:
            lo, hi = int(match[1]), int(match[2])
            if not 1 <= lo <= hi:
                raise SweepError(f"--vary {text!r}: need 1 <= LO <= HI")
            return cls(name.strip(), lo=lo, hi=hi)
        items = [v.strip() for v in spec.split(",") if v.strip()]
        unit = re.match(r"^[0-9.]+\s*([a-z]+)$", items[-1])
        if unit:
            items = [v if re.search(r"[a-z]$", v) else v + unit[1] for v in items]
        return cls(name.strip(), values=tuple(items))


def series_of(knobs: list[Knob]) -> tuple[Knob | None, list[dict[str, str]]]:
    """The searched range knob (at most one) and every combination of the list knobs."""
    ranges = [k for k in knobs if k.is_range]
    if len(ranges) > 1:
        raise SweepError("--vary: at most one knob may be a range (LO..HI); give the others as lists")
    if len({k.name for k in knobs}) != len(knobs):
        raise SweepError("--vary: each knob once")
    lists = [k for k in knobs if not k.is_range]
    combos = [dict(zip([k.name for k in lists], values))
              for values in itertools.product(*[k.values for k in lists])]
    return (ranges[0] if ranges else None), combos


@dataclass
class PointResult:
    """What one sweep point measured over its counted cells."""

    n: int
    label: str
    throughput: float          # units finished ok per second of run phase
    makespan_s: float
    p50_ms: float
    p95_ms: float
    error_rate: float          # failed + not-run units over all units
    clean: bool                # every cell ok, no failed unit, no failed check
    memory_mb: float = math.nan
    values: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Search:
    """Adaptive choice of the next concurrency in ``lo..hi`` within ``budget`` points."""

    def __init__(self, lo: int, hi: int, budget: int = 10):
        self.lo, self.hi, self.budget = lo, hi, budget
        self.done: dict[int, PointResult] = {}
        self._doubling = True

    def _best(self) -> PointResult | None:
        clean = [p for p in self.done.values() if p.clean]
        return max(clean, key=lambda p: (p.throughput, -p.n), default=None)

    def _past_the_knee(self, last: PointResult) -> bool:
        best = self._best()
        if last.error_rate >= 0.5:
            return True  # errors took over: higher concurrency only fails more
        return best is not None and last.n >= 4 * best.n and last.throughput < 0.8 * best.throughput

    def next(self) -> int | None:
        """The next concurrency to run, or None when the search is over."""
        if len(self.done) >= self.budget:
            return None
        if self._doubling:
            if not self.done:
                return self.lo
            last = self.done[max(self.done)]
            if last.n < self.hi and not self._past_the_knee(last):
                return min(self.hi, last.n * 2)
            self._doubling = False
        return self._bisect()

    def _bisect(self) -> int | None:
        best = self._best()
        if best is None:
            return None
        ns = sorted(self.done)
        lower = [n for n in ns if n < best.n]
        upper = [n for n in ns if n > best.n]
        sides = []
        for other in (lower[-1] if lower else None, upper[0] if upper else None):
            if other is not None:
                sides.append((self.done[other].throughput if self.done[other].clean else -1.0, other))
        for _, other in sorted(sides, reverse=True):  # the better neighbour first
            if max(best.n, other) / min(best.n, other) < MIN_BISECT_RATIO:
                continue  # the knee is located as closely as repeats can tell apart
            mid = round(math.sqrt(best.n * other))
            if mid not in self.done and min(best.n, other) < mid < max(best.n, other):
                return mid
        return None

    def observe(self, point: PointResult) -> None:
        self.done[point.n] = point


@dataclass
class SeriesSummary:
    """What one series of points says."""

    values: dict[str, str]
    points: list[PointResult]
    fit: UslFit | None
    best_clean: PointResult | None
    recommended: PointResult | None
    error_onset: int | None     # the smallest concurrency with failed units

    def as_dict(self) -> dict[str, Any]:
        return {"values": self.values, "points": [p.as_dict() for p in self.points],
                "fit": self.fit.as_dict() if self.fit else None,
                "best_clean": self.best_clean.n if self.best_clean else None,
                "recommended": self.recommended.n if self.recommended else None,
                "error_onset": self.error_onset}


def summarize_series(points: list[PointResult], values: dict[str, str] | None = None) -> SeriesSummary:
    """USL fit on the clean points, best clean throughput, the recommendation and the onset."""
    points = sorted(points, key=lambda p: p.n)
    clean = [p for p in points if p.clean and p.throughput > 0]
    fit = fit_usl([p.n for p in clean], [p.throughput for p in clean]) if clean else None
    best = max(clean, key=lambda p: p.throughput, default=None)
    recommended = None
    if best is not None:
        recommended = min((p for p in clean if p.throughput >= (1 - RECOMMEND_WITHIN) * best.throughput),
                          key=lambda p: p.n)
    onset = min((p.n for p in points if p.error_rate > 0), default=None)
    return SeriesSummary(values or {}, points, fit, best, recommended, onset)
