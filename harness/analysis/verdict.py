"""The verdict: which mode to use, with the reasons a design review can check.

1. Discard every mode that did not finish cleanly: a cell timed out, exceeded the memory
   budget or crashed; verify failed; more units failed than ``--error-budget`` allows; the
   p99 unit duration is over ``--p99-budget``; peak RSS is over the run's ``--max-memory``.
2. Among the rest, the fastest by median makespan; every mode whose difference from it is
   not significant (:func:`harness.analysis.stats.compare_samples`) is tied with it.
3. Of the tied modes, the simplest wins (``Mode.simplicity``: serial < grouped < threads <
   asyncio < processes < dask): a parallel mode has to earn its complexity.

The over-optimization warning: a parallel mode whose gain over serial is under
``--min-gain`` while it adds failed units, tail latency or memory is flagged, recommended or
not: that is the trade a design review should see spelled out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.frames import cells_frame, counted, samples_frame, units_frame
from harness.analysis.stats import Difference, Sample, compare_samples, makespan_sample
from harness.analysis.table import comparison_table
from harness.records import RunData

# Verdict tie-break when a mode is not registered here (e.g. a run made elsewhere).
FALLBACK_SIMPLICITY = {"serial": 0, "grouped": 1, "threads": 2, "asyncio": 3, "processes": 4,
                       "dask": 5}
# "Adds tail latency or memory": more than this fraction over serial's (noise margin).
ADDS_MARGIN = 0.10
FEW_REPEATS = 3


def simplicity(mode_name: str) -> int:
    """Legacy tie-break (replaced by the recorded simplicity)."""
    return FALLBACK_SIMPLICITY.get(mode_name, 99)


@dataclass
class Budgets:
    """The verdict's limits; stored in run.json (schema v2) so re-rendering agrees."""

    error_budget: float = 0.0           # fraction of units allowed to fail or not run
    p99_budget_ms: float | None = None  # p99 unit duration limit
    max_memory_mb: float | None = None  # the run's --max-memory
    min_gain: float = 0.2               # over-optimization warning below this gain

    @classmethod
    def from_run(cls, run: dict[str, Any], **overrides: Any) -> "Budgets":
        """The run's recorded budgets, with ``overrides`` (not None) on top."""
        recorded = dict(run.get("budgets") or {})
        if recorded.get("max_memory_mb") is None:
            recorded["max_memory_mb"] = (run.get("config") or {}).get("max_memory_mb")
        known = {k: v for k, v in recorded.items() if k in cls.__dataclass_fields__}
        known.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**known)


@dataclass(eq=False)
class ModeResult:
    """What the verdict needs to know about one mode (one table row)."""

    label: str
    mode_name: str
    sample: Sample                      # counted makespans, censored where unfinished
    statuses: dict[str, int] = field(default_factory=dict)  # cell status -> count
    verify_ok: bool | None = True
    verify_failed: str = ""
    failed_units: int = 0               # error + not-run
    units_total: int = 0
    p99_ms: float = math.nan
    rss_peak_mb: float = math.nan
    simplicity: float = 0.0

    @property
    def median(self) -> float:
        return float(np.median(self.sample.values)) if len(self.sample) else math.nan


@dataclass
class Verdict:
    """The recommendation (a mode label, or None), with reasons per mode and warnings."""

    recommended: str | None
    summary: str
    status: dict[str, str]              # label -> recommended | tied | slower | discarded
    reasons: dict[str, list[str]]
    warnings: list[str]
    budgets: Budgets

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budgets": asdict(self.budgets)}


def _discard_reasons(r: ModeResult, budgets: Budgets) -> list[str]:
    cells = sum(r.statuses.values())
    out = []
    for status, why in (("timeout", "timed out"), ("memory-exceeded", "exceeded --max-memory"),
                        ("crashed", "crashed"), ("interrupted", "was interrupted"),
                        ("harness-error", "hit a harness error")):
        if r.statuses.get(status):
            out.append(f"{why} in {r.statuses[status]} of {cells} cells (makespan censored: "
                       f">= {r.sample.values.max():.3f} s)")
    if len(r.sample) == 0:
        out.append("no counted cells")
    if r.verify_ok is False:
        out.append(f"failed verify: {r.verify_failed or 'see verify results'}")
    if r.units_total and r.failed_units / r.units_total > budgets.error_budget:
        out.append(f"{r.failed_units} of {r.units_total} units failed or did not run "
                   f"({r.failed_units / r.units_total:.1%}; error budget "
                   f"{budgets.error_budget:.1%})")
    if budgets.p99_budget_ms is not None and r.p99_ms > budgets.p99_budget_ms:
        out.append(f"p99 {r.p99_ms:.1f} ms over the p99 budget {budgets.p99_budget_ms:g} ms")
    if (budgets.max_memory_mb is not None and r.rss_peak_mb > budgets.max_memory_mb
            and not r.statuses.get("memory-exceeded")):
        out.append(f"peak RSS {r.rss_peak_mb:.0f} MB over the memory budget "
                   f"{budgets.max_memory_mb:g} MB")
    return out


def _over_optimization(results: list[ModeResult], budgets: Budgets,
                       discarded: set[str]) -> list[str]:
    serial = min(results, key=lambda r: r.simplicity, default=None)
    if serial is None or not len(serial.sample) or serial.statuses.keys() - {"ok"}:
        return []
    warnings = []
    for r in results:
        if r is serial or r.label in discarded or not len(r.sample) or not r.median:
            continue
        gain = serial.median / r.median - 1
        if gain >= budgets.min_gain:
            continue
        adds = []
        if r.failed_units > serial.failed_units:
            adds.append(f"{r.failed_units - serial.failed_units} more failed units")
        if r.p99_ms > serial.p99_ms * (1 + ADDS_MARGIN):
            adds.append(f"p99 {r.p99_ms:.1f} ms vs {serial.p99_ms:.1f} ms")
        if r.rss_peak_mb > serial.rss_peak_mb * (1 + ADDS_MARGIN):
            adds.append(f"peak RSS {r.rss_peak_mb:.0f} MB vs {serial.rss_peak_mb:.0f} MB")
        if adds:
            warnings.append(f"over-optimization: {r.label} runs at {gain + 1:.2f}x serial's "
                            f"speed (gain {gain:+.0%}, under --min-gain "
                            f"{budgets.min_gain:.0%}) while adding " + ", ".join(adds))
    return warnings


def decide(results: list[ModeResult], budgets: Budgets) -> Verdict:
    """Apply the verdict rules (module docstring) to per-mode results."""
    status: dict[str, str] = {}
    reasons: dict[str, list[str]] = {r.label: [] for r in results}
    eligible = []
    for r in results:
        why = _discard_reasons(r, budgets)
        if why:
            status[r.label], reasons[r.label] = "discarded", why
        else:
            eligible.append(r)
    warnings = _over_optimization(results, budgets, set(status))
    if any(0 < len(r.sample) < FEW_REPEATS for r in results):
        warnings.append(f"fewer than {FEW_REPEATS} repeats per mode: only very large "
                        "differences can be significant; run --repeat 5 or more")
    if not eligible:
        return Verdict(None, "no mode can be recommended: every mode was discarded", status,
                       reasons, warnings, budgets)
    fastest = min(eligible, key=lambda r: r.median)
    diffs: dict[str, Difference] = {r.label: compare_samples(r.sample, fastest.sample)
                                    for r in eligible if r is not fastest}
    tied = [r for r in eligible if r is fastest or not diffs[r.label].significant]
    chosen = min(tied, key=lambda r: (r.simplicity, r.median))
    for r in eligible:
        if r is chosen:
            status[r.label] = "recommended"
            if r is fastest:
                reasons[r.label].append(f"fastest that finished cleanly: median "
                                        f"{r.median:.3f} s")
            else:
                reasons[r.label].append(
                    f"not significantly different from the fastest, {fastest.label} (this "
                    f"mode is {diffs[r.label].describe()}), and simpler")
        elif r in tied:
            status[r.label] = "tied"
            reasons[r.label].append(
                f"fastest (median {r.median:.3f} s), but {chosen.label} is not significantly "
                "slower and simpler" if r is fastest else
                f"not significantly different from the fastest: {diffs[r.label].describe()}; "
                f"{chosen.label} is simpler")
        else:
            status[r.label] = "slower"
            reasons[r.label].append(f"significantly slower than {fastest.label}: "
                                    f"{diffs[r.label].describe()}")
    summary = f"recommended: {chosen.label} ({'; '.join(reasons[chosen.label])})"
    return Verdict(chosen.label, summary, status, reasons, warnings, budgets)


def mode_results(cells: pd.DataFrame, table: pd.DataFrame,
                 timeout_s: float | None = None) -> list[ModeResult]:
    """One :class:`ModeResult` per table row, from the counted cells of that mode."""
    kept = counted(cells)
    results = []
    for row in table.to_dict("records"):
        mine = kept[kept["label"] == row["mode"]]
        results.append(ModeResult(
            label=row["mode"], mode_name=row["mode"], simplicity=row["simplicity"],
            sample=makespan_sample(mine, timeout_s),
            statuses={str(k): int(v) for k, v in mine["status"].value_counts().items()},
            verify_ok=row["verify_ok"], verify_failed=row["verify_failed"],
            failed_units=row["error_count"] + row["not_run"],
            units_total=row["units_total"], p99_ms=float(row["p99_ms"]),
            rss_peak_mb=float(row["memory_peak_mb"])))
    return results


@dataclass
class Analysis:
    """A loaded run with every derived frame, its comparison table and its verdict."""

    run: RunData
    units: pd.DataFrame
    samples: pd.DataFrame
    cells: pd.DataFrame
    table: pd.DataFrame
    verdict: Verdict


def analyze(run: RunData, **budget_overrides: Any) -> Analysis:
    """Frames, table and verdict of a run; budgets from run.json unless overridden."""
    units = units_frame(run)
    samples = samples_frame(run)
    cells = cells_frame(run, samples, units)
    table = comparison_table(run, cells, units)
    budgets = Budgets.from_run(run.run, **budget_overrides)
    timeout_s = (run.run.get("config") or {}).get("timeout_s")
    results = mode_results(cells, table, timeout_s) if not table.empty else []
    return Analysis(run, units, samples, cells, table, decide(results, budgets))
