"""The comparison table: one row per mode, over the counted (non-warm-up) cells.

What each number means (one definition for every mode; :func:`table_notes` prints it):

* **run s** is the run phase, first submit to last completion, the makespan compared
  with the bound; set-up (pool spawn, cluster start) and tear-down are columns of their
  own. It is the median over counted cells with its distribution-free interval
  (:mod:`harness.analysis.stats`); ``>=`` marks a median that a cut-short cell makes a
  lower bound. Outlier cells are flagged, never dropped.
* **latency** p50/p95/p99 = end - due (queueing included: a batch's units are all due at
  t0, so a unit that waited in a queue shows it); **service** = end - start, the unit's own
  run. Only units that finished ok enter the percentiles; failed and not-run units are
  counted on their own.
* **memory** is the peak of the tree's summed PSS (shared pages counted once).
* **speedup** is against the run's baseline: the simplest mode (lowest simplicity).
  ``~`` marks a difference from it that is not significant.
* **efficiency** = bound / run s, never above 1: a cell measured below its bound is a
  harness error and is shown as such.
* **declared metrics** (a scenario's ``METRICS``: duplicates, lost updates, ...) are
  columns of their own, each the worst cell of the mode.

The analysis never names a mode or a service: it reads labels and simplicity from the
cell records.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.frames import (cells_frame, counted, declared_metrics, samples_frame,
                                     units_frame)
from harness.analysis.stats import Sample, compare_samples, makespan_sample, summarize
from harness.records import RunData

HARNESS_ERROR = "harness-error"

# Column order of the full table (table.md, table.csv, HTML), with display names.
COLUMNS = {
    "mode": "mode",
    "cells": "cells",
    "outcome": "outcome",
    "wall_s": "run s (median)",
    "wall_range": "run min-max",
    "wall_ci": "run CI",
    "wall_ci_coverage": "CI level",
    "outliers": "outlier cells",
    "setup_s": "setup s",
    "teardown_s": "teardown s",
    "units_per_s": "units/s",
    "p50_ms": "latency p50 ms",
    "p95_ms": "latency p95 ms",
    "p99_ms": "latency p99 ms",
    "service_p50_ms": "service p50 ms",
    "service_p99_ms": "service p99 ms",
    "cpu_mean_pct": "CPU mean %",
    "cpu_peak_pct": "CPU peak %",
    "memory_peak_mb": "peak memory MB (PSS)",
    "cluster_cpu_mean_pct": "cluster CPU mean %",
    "cluster_memory_peak_mb": "cluster peak memory MB",
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
    "verify": "verify",
    "speedup": "speedup vs baseline",
    "efficiency": "efficiency vs bound",
}

# The terminal's compact table: what decides, narrow enough for 80 columns.
TERMINAL_COLUMNS = ("mode", "run s [CI]", "speedup vs baseline", "latency p99 ms", "errors",
                    "verify", "efficiency vs bound")

# Columns of database scenarios, present only when the run measured them:
# cells-frame column -> (table key, aggregate over a mode's cells).
_DB_COLUMNS = {"db_deadlocks": ("deadlocks", "median"), "db_rollbacks": ("rollbacks", "median"),
               "db_lock_wait_peak": ("lock_wait_peak", "max"),
               "db_connections_peak": ("connections_peak", "max")}
_MEDIANS = ("cpu_mean_pct", "cpu_peak_pct", "read_mb", "write_mb", "read_chars_mb",
            "write_chars_mb", "setup_s", "teardown_s", "cluster_cpu_mean_pct")
_MAXIMA = ("memory_peak_mb", "rss_peak_mb", "cluster_memory_peak_mb")


def _errors_by_class(units: pd.DataFrame) -> str:
    failed = units[units["status"] == "error"] if not units.empty else units
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


def _verify(cells: pd.DataFrame, failed: list[str]) -> tuple[str, bool | None]:
    """The verify column and flag: None (unverified) when no cell reported a check."""
    known = cells["verify_ok"].dropna()
    if known.empty:
        return "unverified", None
    ok = bool(known.all())
    return ("ok" if ok else "FAIL: " + ", ".join(failed)), ok


def _percentiles(units: pd.DataFrame) -> dict[str, float]:
    """Latency from due and service time of the units that finished ok."""
    done = units[units["status"] == "ok"] if not units.empty else units
    latency = done["latency_ms"].dropna() if not done.empty else pd.Series(dtype=float)
    service = done["service_ms"].dropna() if not done.empty else pd.Series(dtype=float)

    def q(series: pd.Series, p: float) -> float:
        return float(series.quantile(p)) if not series.empty else np.nan

    return {"p50_ms": q(latency, 0.5), "p95_ms": q(latency, 0.95), "p99_ms": q(latency, 0.99),
            "max_ms": float(latency.max()) if not latency.empty else np.nan,
            "service_p50_ms": q(service, 0.5), "service_p99_ms": q(service, 0.99)}


def _resources(mine: pd.DataFrame) -> dict[str, Any]:
    """Medians of per-cell rates, maxima of peaks, database figures where measured."""
    row: dict[str, Any] = {}
    for col in _MEDIANS:
        row[col] = float(mine[col].median()) if col in mine and mine[col].notna().any() \
            else np.nan
    for col in _MAXIMA:
        row[col] = float(mine[col].max()) if col in mine and mine[col].notna().any() \
            else np.nan
    row.update({key: float(getattr(mine[col].dropna(), how)())
                for col, (key, how) in _DB_COLUMNS.items()
                if col in mine and mine[col].notna().any()})
    row["cluster_remote"] = bool(mine["cluster_remote"].fillna(False).any()) \
        if "cluster_remote" in mine else False
    return row


def _metrics(mine: pd.DataFrame, metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Each declared metric's worst cell: the most duplicates, the fewest of what should
    be many. Absent (not measured) stays NaN, never 0."""
    row = {}
    for metric in metrics:
        column = f"metric_{metric['name']}"
        values = mine[column].dropna() if column in mine else pd.Series(dtype=float)
        worst = values.max() if metric.get("lower_is_better", True) else values.min()
        row[metric["name"]] = float(worst) if not values.empty else np.nan
    return row


def _finished(mine: pd.DataFrame, units: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells that ran to the end (status ok, not censored) and their units: a crashed
    or cut-short cell never enters a percentile, a rate or a median."""
    done = mine[(mine["status"] == "ok") & ~mine["censored"].fillna(False).astype(bool)]
    return done, units[units["cell"].isin(set(done["cell_id"]))] if not units.empty else units


def _mode_row(label: str, mine: pd.DataFrame, mine_units: pd.DataFrame,
              sample: Sample, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    summary = summarize(sample)
    done, done_units = _finished(mine, mine_units)
    walls = done["makespan_s"].dropna()
    failed = _failed_checks(mine)
    verify_text, verify_ok = _verify(mine, failed)
    row = {
        "mode": label,
        "spec": str(mine["mode"].iloc[0]),  # the mode as asked (--modes), e.g. "grouped"
        "simplicity": float(mine["simplicity"].min()) if "simplicity" in mine else 0.0,
        "workers": int(mine["workers"].max()),
        "cells": len(mine),
        "outcome": _outcome(mine),
        "wall_s": summary.median,
        "wall_is_bound": summary.median_is_bound,
        "wall_min": float(sample.values.min()) if len(sample) else np.nan,
        "wall_max": float(sample.values.max()) if len(sample) else np.nan,
        "wall_ci_low": summary.ci_low,
        "wall_ci_high": summary.ci_high,
        "wall_ci_coverage": summary.coverage,
        # cut short (a lower bound) or never started (no value at all): no ratio from it
        "censored_cells": summary.censored + (len(mine) - len(sample)),
        "outliers": ", ".join(mine["cell_id"].iloc[i] for i in summary.outliers) or "-",
        "units_total": int(mine["units_total"].sum()),
        "units_per_s": float(done["units_ok"].sum() / walls.sum()) if walls.sum() > 0
        else np.nan,
        "cells_left_out": len(mine) - len(done),  # not in percentiles, rates or medians
        "errors": _errors_by_class(mine_units),
        "error_count": int(mine["units_error"].sum()),
        "not_run": int(mine["units_not_run"].sum()),
        "retries": int(mine["retries"].sum()),
        "verify": verify_text,
        "verify_ok": verify_ok,
        "verify_failed": ", ".join(failed),
        "bound_s": float(mine["bound_s"].median()) if mine["bound_s"].notna().any() else np.nan,
        "harness_errors": int((mine["status"] == HARNESS_ERROR).sum()),
        **_percentiles(done_units),
        **_resources(done),
        **_metrics(mine, metrics),
    }
    row["wall_range"] = f"{row['wall_min']:.3f}-{row['wall_max']:.3f}" \
        if not np.isnan(row["wall_min"]) else "-"
    row["wall_ci"] = _interval(summary.ci_low, summary.ci_high)
    return row


def mode_rows(cells: pd.DataFrame, units: pd.DataFrame, timeout_s: float | None = None,
              metrics: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Aggregate counted cells per mode label, in plan order."""
    rows, samples = [], {}
    kept = counted(cells)
    for label in dict.fromkeys(kept["label"]):
        mine = kept[kept["label"] == label]
        mine_units = units[units["cell"].isin(set(mine["cell_id"]))] if not units.empty \
            else units
        samples[label] = makespan_sample(mine, timeout_s)  # cut-short cells kept, censored
        rows.append(_mode_row(label, mine, mine_units, samples[label], metrics or []))
    baseline = min(rows, key=lambda r: (r["simplicity"], r["workers"]), default=None)
    for row in rows:
        row["baseline"] = row is baseline
        # A cut-short cell's makespan is a lower bound, never a value: no ratio from it.
        finished = not row["censored_cells"] and row["wall_s"] > 0
        base_ok = baseline is not None and not baseline["censored_cells"]
        row["speedup"] = baseline["wall_s"] / row["wall_s"] if finished and base_ok else np.nan
        row["speedup_significant"] = row is baseline or (base_ok and compare_samples(
            samples[row["mode"]], samples[baseline["mode"]]).significant)
        row["efficiency"] = row["bound_s"] / row["wall_s"] if finished else np.nan
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
    metrics = declared_metrics(run)
    table = pd.DataFrame(mode_rows(cells, units, (run.run.get("config") or {}).get("timeout_s"),
                                   metrics))
    table.attrs["metrics"] = metrics  # the declared columns, for every renderer
    return table


def metric_title(metric: dict[str, Any]) -> str:
    """A declared metric's column title: its name in words (``lost_updates``: lost updates)."""
    return metric["name"].replace("_", " ")


def terminal_columns(table: pd.DataFrame) -> list[str]:
    """The compact columns, with the scenario's declared metrics before verify."""
    titles = [metric_title(m) for m in table.attrs.get("metrics", [])]
    at = TERMINAL_COLUMNS.index("verify")
    return [*TERMINAL_COLUMNS[:at], *titles, *TERMINAL_COLUMNS[at:]]


def table_notes(table: pd.DataFrame) -> list[str]:
    """What the columns mean, for the lines under every rendering of the table."""
    if table.empty:
        return []
    baseline = table.loc[table["baseline"].astype(bool), "mode"]
    notes = [
        "run s: the run phase (first submit to last completion), median of the counted "
        "cells; set-up and tear-down are shown apart",
        "latency = end - due (queueing included; a batch's units are all due at t0); "
        "service = end - start; failed units are not in the percentiles",
        "memory: peak of the process tree's summed PSS (shared pages counted once)",
    ]
    if not baseline.empty:
        notes.append(f"speedup vs the baseline, {baseline.iloc[0]} (the simplest mode); "
                     "~ = not significant")
    notes.append("efficiency = bound / run s; a run below its bound is a harness error")
    remote = table.loc[table.get("cluster_remote", pd.Series(False, index=table.index))
                       .astype(bool), "mode"]
    if not remote.empty:
        notes.append(f"{', '.join(remote)}: a remote cluster; its CPU and memory columns are "
                     "the client's only, the cluster columns were measured on its workers")
    return notes


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table with display names and rounded numbers, for terminal/Markdown/CSV."""
    shown = pd.DataFrame()
    for key, title in COLUMNS.items():
        if key == "verify":
            for metric in table.attrs.get("metrics", []):
                if metric["name"] in table:
                    shown[metric_title(metric)] = table[metric["name"]].map(_format_count)
        if key in table:
            shown[title] = table[key].map(lambda v, k=key: _format(k, v))
    if "wall_is_bound" in table and "wall_s" in table:  # a censored cell decides the median
        shown[COLUMNS["wall_s"]] = [(">=" if bound else "") + text for bound, text in
                                    zip(table["wall_is_bound"], shown[COLUMNS["wall_s"]])]
    if "speedup_significant" in table and "speedup" in table:
        shown[COLUMNS["speedup"]] = [text if sig or text == "-" else "~" + text for sig, text
                                     in zip(table["speedup_significant"],
                                            shown[COLUMNS["speedup"]])]
    if "harness_errors" in table and "efficiency" in table:
        shown[COLUMNS["efficiency"]] = [
            "HARNESS ERROR" if errors or (isinstance(e, float) and e > 1) else text
            for errors, e, text in zip(table["harness_errors"], table["efficiency"],
                                       shown[COLUMNS["efficiency"]])]
    if COLUMNS["wall_ci"] in shown.columns:
        shown["run s [CI]"] = [w if ci == "-" else f"{w} [{ci}]" for w, ci in
                               zip(shown[COLUMNS["wall_s"]], shown[COLUMNS["wall_ci"]])]
    return shown


def _format_count(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:g}"


def _format(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if key in ("cells", "retries", *(key for key, _ in _DB_COLUMNS.values())):
        return str(int(value))
    if key == "wall_ci_coverage":
        return f"{value:.0%}" if value > 0 else "-"
    if key == "speedup":
        return f"{value:.2f}x"
    if key == "efficiency":
        return f"{value:.2f}"
    if key in ("wall_s", "setup_s", "teardown_s"):
        return f"{value:.3f}"
    if key.endswith("_ms") or key.endswith("_pct") or key.endswith("_mb") \
            or key == "units_per_s":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return str(value)
