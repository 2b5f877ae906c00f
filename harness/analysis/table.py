"""The comparison table: one row per mode, over the counted (non-warm-up) cells."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.frames import cells_frame, samples_frame, units_frame
from harness.records import RunData

# Column order of the table, with display names used by every renderer.
COLUMNS = {
    "mode": "mode",
    "cells": "cells",
    "outcome": "outcome",
    "wall_s": "wall s (median)",
    "wall_range": "wall min-max",
    "units_per_s": "units/s",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "cpu_mean_pct": "CPU mean %",
    "cpu_peak_pct": "CPU peak %",
    "rss_peak_mb": "peak RSS MB",
    "read_mb": "read MB",
    "write_mb": "write MB",
    "errors": "errors",
    "retries": "retries",
    "verify": "verify",
    "speedup": "speedup vs serial",
    "efficiency": "efficiency vs bound",
}


# The terminal shows the columns that decide; table.md/table.csv keep every column.
TERMINAL_COLUMNS = ("mode", "outcome", "wall s (median)", "wall min-max", "units/s", "p50 ms",
                    "p99 ms", "CPU mean %", "peak RSS MB", "errors", "verify",
                    "speedup vs serial", "efficiency vs bound")


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


def _verify(cells: pd.DataFrame) -> str:
    known = cells["verify_ok"].dropna()
    if known.empty:
        return "-"
    if known.all():
        return "ok"
    failed = sorted({name for text in cells["verify_failed"] for name in text.split("; ") if name})
    return "FAIL: " + ", ".join(failed)


def mode_rows(cells: pd.DataFrame, units: pd.DataFrame) -> list[dict[str, Any]]:
    """Aggregate counted cells per mode label, in plan order."""
    rows = []
    counted = cells[~cells["warmup"].astype(bool)]
    for label in dict.fromkeys(counted["label"]):
        mine = counted[counted["label"] == label]
        ids = set(mine["cell_id"])
        mine_units = units[units["cell"].isin(ids)] if not units.empty else units
        ran = mine_units[mine_units["status"].isin(["ok", "error"])] if not mine_units.empty \
            else mine_units
        walls = mine["makespan_s"].dropna()
        durations = ran["duration_ms"].dropna() if not ran.empty else pd.Series(dtype=float)
        ok_units = mine["units_ok"].sum()
        row = {
            "mode": label,
            "mode_name": mine["mode"].iloc[0],
            "cells": len(mine),
            "outcome": _outcome(mine),
            "wall_s": float(walls.median()) if not walls.empty else np.nan,
            "wall_min": float(walls.min()) if not walls.empty else np.nan,
            "wall_max": float(walls.max()) if not walls.empty else np.nan,
            "units_per_s": float(ok_units / walls.sum()) if walls.sum() > 0 else np.nan,
            "p50_ms": durations.quantile(0.50) if not durations.empty else np.nan,
            "p95_ms": durations.quantile(0.95) if not durations.empty else np.nan,
            "p99_ms": durations.quantile(0.99) if not durations.empty else np.nan,
            "max_ms": durations.max() if not durations.empty else np.nan,
            "errors": _errors_by_class(mine_units) if not mine_units.empty else "0",
            "error_count": int(mine["units_error"].sum()),
            "not_run": int(mine["units_not_run"].sum()),
            "retries": int(mine["retries"].sum()),
            "verify": _verify(mine),
            "verify_ok": bool(mine["verify_ok"].dropna().all()),
            "bound_s": float(mine["bound_s"].median()) if mine["bound_s"].notna().any() else np.nan,
        }
        for col in ("cpu_mean_pct", "cpu_peak_pct", "read_mb", "write_mb", "read_chars_mb",
                    "write_chars_mb"):
            row[col] = float(mine[col].median()) if col in mine and mine[col].notna().any() \
                else np.nan
        row["rss_peak_mb"] = float(mine["rss_peak_mb"].max()) if "rss_peak_mb" in mine \
            else np.nan
        row["wall_range"] = f"{row['wall_min']:.3f}-{row['wall_max']:.3f}" \
            if not np.isnan(row["wall_min"]) else "-"
        rows.append(row)
    serial = next((r for r in rows if r["mode_name"] == "serial"), None)
    for row in rows:
        row["speedup"] = serial["wall_s"] / row["wall_s"] if serial and row["wall_s"] else np.nan
        row["efficiency"] = row["bound_s"] / row["wall_s"] if row["wall_s"] else np.nan
    return rows


def comparison_table(run: RunData) -> pd.DataFrame:
    """The comparison table as a DataFrame (one row per mode; raw numeric columns kept)."""
    units = units_frame(run)
    cells = cells_frame(run, samples_frame(run), units)
    if cells.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.DataFrame(mode_rows(cells, units))


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table with display names and rounded numbers, for terminal/Markdown/CSV."""
    shown = pd.DataFrame()
    for key, title in COLUMNS.items():
        if key not in table:
            continue
        shown[title] = table[key].map(lambda v, k=key: _format(k, v))
    return shown


def _format(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if key in ("cells", "retries"):
        return str(int(value))
    if key in ("speedup", "efficiency"):
        return f"{value:.2f}x" if key == "speedup" else f"{value:.2f}"
    if key == "wall_s":
        return f"{value:.3f}"
    if key.endswith("_ms"):
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    if key.endswith("_pct") or key.endswith("_mb") or key == "units_per_s":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return str(value)
