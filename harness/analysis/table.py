"""The comparison table: one row per mode, over the counted (non-warm-up) cells.

Makespans are summarized by :mod:`harness.analysis.stats`: the median with its
distribution-free interval ("wall CI"; at 3 repeats [min, max] with 75% coverage),
``>=`` before a median that a timed-out or crashed cell makes a lower bound, and outlier
cells flagged, never dropped. Significance is judged against serial, the reference every
team knows: ``~`` before "speedup vs serial" means the difference from serial is not
significant (the verdict compares the modes with the fastest one instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.frames import cells_frame, counted, samples_frame, units_frame
from harness.analysis.stats import Sample, compare_samples, makespan_sample, summarize
from harness.records import RunData

# Column order of the table, with display names used by every renderer.
COLUMNS = {
    "mode": "mode",
    "cells": "cells",
    "outcome": "outcome",
    "wall_s": "wall s (median)",
    "wall_range": "wall min-max",
    "wall_ci": "wall CI",
    "wall_ci_coverage": "CI level",
    "outliers": "outlier cells",
    "units_per_s": "units/s",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "cpu_mean_pct": "CPU mean %",
    "cpu_peak_pct": "CPU peak %",
    "rss_peak_mb": "peak RSS MB",
    "read_mb": "disk read MB",
    "write_mb": "disk write MB",
    # read()/write() syscall bytes: through FUSE, NFS or a socket the disk counters stay 0.
    "read_chars_mb": "read() MB",
    "write_chars_mb": "write() MB",
    "errors": "errors",
    "retries": "retries",
    "deadlocks": "deadlocks",
    "rollbacks": "rollbacks",
    "lock_wait_peak": "lock-wait peak",
    "connections_peak": "connections peak",
    "lost_updates": "lost updates",
    "verify": "verify",
    "speedup": "speedup vs serial",
    "efficiency": "efficiency vs bound",
}


# The terminal shows the columns that decide; table.md/table.csv keep every column.
TERMINAL_COLUMNS = ("mode", "outcome", "wall s (median)", "wall CI", "units/s", "p50 ms",
                    "p99 ms", "CPU mean %", "peak RSS MB", "errors", "deadlocks", "rollbacks",
                    "lock-wait peak", "connections peak", "lost updates", "verify",
                    "speedup vs serial", "efficiency vs bound")

# Columns of database scenarios, present only when the run measured them:
# cells-frame column -> (table key, aggregate over a mode's cells).
_DB_COLUMNS = {"db_deadlocks": ("deadlocks", "median"), "db_rollbacks": ("rollbacks", "median"),
               "db_lock_wait_peak": ("lock_wait_peak", "max"),
               "db_connections_peak": ("connections_peak", "max"),
               "lost_updates": ("lost_updates", "max")}


def _errors_by_class(units: pd.DataFrame) -> str:
    failed = units[units["status"] == "error"]
    if failed.empty:
        return "0"
    counts = failed["error_class"].value_counts()
    return ", ".join(f"{name} x{n}" for name, n in counts.items())


def _outcome(cells: pd.DataFrame) -> str:
    counts = cells["status"].value_counts()
    if list(counts.index) == ["ok"]:
        return "ok"
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _failed_checks(cells: pd.DataFrame) -> list[str]:
    return sorted({name for text in cells["verify_failed"] for name in text.split("; ") if name})


def _verify(cells: pd.DataFrame, failed: list[str]) -> str:
    known = cells["verify_ok"].dropna()
    if known.empty:
        return "-"
    return "ok" if known.all() else "FAIL: " + ", ".join(failed)


def mode_rows(cells: pd.DataFrame, units: pd.DataFrame,
              timeout_s: float | None = None) -> list[dict[str, Any]]:
    """Aggregate counted cells per mode label, in plan order."""
    rows = []
    samples: dict[str, Sample] = {}
    kept = counted(cells)
    for label in dict.fromkeys(kept["label"]):
        mine = kept[kept["label"] == label]
        ids = set(mine["cell_id"])
        mine_units = units[units["cell"].isin(ids)] if not units.empty else units
        ran = mine_units[mine_units["status"].isin(["ok", "error"])] if not mine_units.empty \
            else mine_units
        walls = mine["makespan_s"].dropna()
        failed = _failed_checks(mine)
        samples[label] = makespan_sample(mine, timeout_s)  # censored cells kept
        summary = summarize(samples[label])
        durations = ran["duration_ms"].dropna() if not ran.empty else pd.Series(dtype=float)
        ok_units = mine["units_ok"].sum()
        row = {
            "mode": label,
            "mode_name": mine["mode"].iloc[0],
            "cells": len(mine),
            "outcome": _outcome(mine),
            "wall_s": summary.median,
            "wall_is_bound": summary.median_is_bound,
            "wall_min": float(samples[label].values.min()),
            "wall_max": float(samples[label].values.max()),
            "wall_ci_low": summary.ci_low,
            "wall_ci_high": summary.ci_high,
            "wall_ci_coverage": summary.coverage,
            "censored_cells": summary.censored,
            "outliers": ", ".join(mine["cell_id"].iloc[i] for i in summary.outliers) or "-",
            "units_total": int(mine["units_total"].sum()),
            "units_per_s": float(ok_units / walls.sum()) if walls.sum() > 0 else np.nan,
            "p50_ms": durations.quantile(0.50) if not durations.empty else np.nan,
            "p95_ms": durations.quantile(0.95) if not durations.empty else np.nan,
            "p99_ms": durations.quantile(0.99) if not durations.empty else np.nan,
            "max_ms": durations.max() if not durations.empty else np.nan,
            "errors": _errors_by_class(mine_units) if not mine_units.empty else "0",
            "error_count": int(mine["units_error"].sum()),
            "not_run": int(mine["units_not_run"].sum()),
            "retries": int(mine["retries"].sum()),
            "verify": _verify(mine, failed),
            "verify_ok": bool(mine["verify_ok"].dropna().all()),
            "verify_failed": ", ".join(failed),
            "bound_s": float(mine["bound_s"].median()) if mine["bound_s"].notna().any() else np.nan,
        }
        for col in ("cpu_mean_pct", "cpu_peak_pct", "read_mb", "write_mb", "read_chars_mb",
                    "write_chars_mb"):
            row[col] = float(mine[col].median()) if col in mine and mine[col].notna().any() \
                else np.nan
        row["rss_peak_mb"] = float(mine["rss_peak_mb"].max()) if "rss_peak_mb" in mine \
            else np.nan
        row.update({key: float(getattr(mine[col].dropna(), how)())
                    for col, (key, how) in _DB_COLUMNS.items()
                    if col in mine and mine[col].notna().any()})
        row["wall_range"] = f"{row['wall_min']:.3f}-{row['wall_max']:.3f}" \
            if not np.isnan(row["wall_min"]) else "-"
        row["wall_ci"] = _interval(summary.ci_low, summary.ci_high)
        rows.append(row)
    serial = next((r for r in rows if r["mode_name"] == "serial"), None)
    for row in rows:
        row["speedup"] = serial["wall_s"] / row["wall_s"] if serial and row["wall_s"] else np.nan
        row["speedup_significant"] = row is serial or (serial is not None and compare_samples(
            samples[row["mode"]], samples[serial["mode"]]).significant)
        row["efficiency"] = row["bound_s"] / row["wall_s"] if row["wall_s"] else np.nan
    return rows


def _interval(low: float, high: float) -> str:
    if np.isnan(low):
        return "-"
    upper = "?" if np.isinf(high) else f"{high:.3f}"  # censored: no upper bound known
    return f"{low:.3f}-{upper}"


def comparison_table(run: RunData, cells: pd.DataFrame | None = None,
                     units: pd.DataFrame | None = None) -> pd.DataFrame:
    """The comparison table as a DataFrame (one row per mode; raw numeric columns kept)."""
    units = units_frame(run) if units is None else units
    cells = cells_frame(run, samples_frame(run), units) if cells is None else cells
    if cells.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.DataFrame(mode_rows(cells, units, (run.run.get("config") or {}).get("timeout_s")))


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table with display names and rounded numbers, for terminal/Markdown/CSV."""
    shown = pd.DataFrame()
    for key, title in COLUMNS.items():
        if key not in table:
            continue
        shown[title] = table[key].map(lambda v, k=key: _format(k, v))
    if "wall_is_bound" in table and "wall_s" in table:  # a censored cell decides the median
        shown[COLUMNS["wall_s"]] = [(">=" if bound else "") + text for bound, text in
                                    zip(table["wall_is_bound"], shown[COLUMNS["wall_s"]])]
    if "speedup_significant" in table and "speedup" in table:
        shown[COLUMNS["speedup"]] = [text if sig or text == "-" else "~" + text for sig, text
                                     in zip(table["speedup_significant"],
                                            shown[COLUMNS["speedup"]])]
    return shown


def _format(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if key in ("cells", "retries", *(key for key, _ in _DB_COLUMNS.values())):
        return str(int(value))
    if key == "wall_ci_coverage":
        return f"{value:.0%}" if value > 0 else "-"
    if key in ("speedup", "efficiency"):
        return f"{value:.2f}x" if key == "speedup" else f"{value:.2f}"
    if key == "wall_s":
        return f"{value:.3f}"
    if key.endswith("_ms"):
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    if key.endswith("_pct") or key.endswith("_mb") or key == "units_per_s":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return str(value)
