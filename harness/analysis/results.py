"""What the verdict knows about each mode, one :class:`ModeResult` per comparison-table row.

The table builds the rows (simplicity, baseline, latency from due, PSS and harness errors per
mode, recorded per cell at run time); :func:`mode_results` reads them, with fallbacks for
columns an older table does not have, so the verdict never needs to know a mode's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.frames import counted
from harness.analysis.stats import Sample, makespan_sample


@dataclass(eq=False)
class ModeResult:
    """What the verdict needs to know about one mode (one table row)."""

    label: str               # e.g. "serial", "threads[8]", "threads[60]+capped(3,200ms)"
    simplicity: float        # lower is simpler; ties broken by workers, then by median
    sample: Sample           # counted makespans (run_s), censored where unfinished
    statuses: dict[str, int] # cell status -> count: ok, timeout, memory-exceeded, crashed,
                             # interrupted, service-down, parent-died, harness-error
    verify_ok: bool | None   # None = the scenario has no checks: "unverified", never "passed"
    verify_failed: str = ""
    failed_units: int = 0    # error + not-run
    units_total: int = 0
    p99_ms: float = math.nan          # p99 latency from due (end - due, queueing included)
    memory_peak_mb: float = math.nan  # peak PSS of the cell's process tree (shared pages once)
    harness_errors: int = 0  # counted cells whose makespan was below the scenario's bound
    baseline: bool = False   # the run's reference mode (lowest simplicity)
    bound_s: float = math.nan  # the scenario's lower bound on the makespan, when it has one
    # Declared metrics: name -> (worst value, lower is better); NaN when not measured.
    metrics: dict[str, tuple[float, bool]] = field(default_factory=dict)
    workers: int = 0         # of equally simple modes, the one with fewer is simpler

    @property
    def median(self) -> float:
        """Median makespan (of the recorded values; nan with no counted cells)."""
        return float(np.median(self.sample.values)) if len(self.sample) else math.nan


def _number(value: Any, default: float = math.nan) -> float:
    """A table cell as a float; missing (None, NaN, absent) gives ``default``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number


def _verify_state(row: dict[str, Any], mine: pd.DataFrame) -> bool | None:
    """True/False from the row; None when no cell ran a check (unverified, not passed)."""
    known = mine["verify_ok"].dropna() if "verify_ok" in mine else pd.Series(dtype=object)
    value = row.get("verify_ok")
    if known.empty or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _below_bound(mine: pd.DataFrame) -> int:
    """Cells that finished faster than the scenario's bound (until the table counts them)."""
    if "bound_s" not in mine:
        return 0
    ok = mine[mine["status"] == "ok"]
    if "units_ok" in ok and "units_total" in ok:  # the bound assumes every unit ran
        ok = ok[ok["units_ok"] == ok["units_total"]]
    makespan = pd.to_numeric(ok["makespan_s"], errors="coerce")
    return int((makespan < pd.to_numeric(ok["bound_s"], errors="coerce")).sum())


def mode_results(cells: pd.DataFrame, table: pd.DataFrame,
                 timeout_s: float | None = None) -> list[ModeResult]:
    """One :class:`ModeResult` per table row, from the counted cells of that mode.

    Columns the table may not have yet fall back: simplicity to the row's order, peak
    memory to ``rss_peak_mb``, harness errors to the cells below their bound."""
    kept = counted(cells)
    results = []
    for index, row in enumerate(table.to_dict("records")):
        mine = kept[kept["label"] == row["mode"]]
        errors = _number(row.get("harness_errors"))
        results.append(ModeResult(
            label=row["mode"], simplicity=_number(row.get("simplicity"), index),
            sample=makespan_sample(mine, timeout_s),
            statuses={str(k): int(v) for k, v in mine["status"].value_counts().items()},
            verify_ok=_verify_state(row, mine), verify_failed=row.get("verify_failed") or "",
            failed_units=int(_number(row.get("error_count"), 0) + _number(row.get("not_run"), 0)),
            units_total=int(_number(row.get("units_total"), 0)),
            p99_ms=_number(row.get("p99_ms")),
            memory_peak_mb=_number(row.get("memory_peak_mb"), _number(row.get("rss_peak_mb"))),
            harness_errors=_below_bound(mine) if math.isnan(errors) else int(errors),
            baseline=row.get("baseline") is True or row.get("baseline") is np.True_,
            bound_s=_number(row.get("bound_s")),
            workers=int(_number(row.get("workers"), 0)),
            metrics={m["name"]: (_number(row.get(m["name"])), m.get("lower_is_better", True))
                     for m in table.attrs.get("metrics", [])}))
    return results
