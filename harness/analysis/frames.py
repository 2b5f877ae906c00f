"""Tidy pandas frames built from a loaded run: one row per cell, per unit, per sample."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.records import RunData
from harness.scenario import ScenarioError, metric_values

_CPU = ("cpu_user", "cpu_sys")


def units_frame(run: RunData) -> pd.DataFrame:
    """One row per unit record, times in ms: ``latency_ms`` = end - due (queueing
    included: what a caller waiting for the unit sees), ``service_ms`` = end - start (the
    unit's own run), ``wait_ms`` = start - due. NaN for units that never ran."""
    rows = [u for cell_units in run.units.values() for u in cell_units]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["cell", "mode", "unit", "group", "status", "service_ms",
                                     "wait_ms", "latency_ms", "attempts"])
    # The status says whether a unit ran, not its start: a unit timed on another host's
    # clock may start "before" t0 and still have run.
    ran = frame["status"] != "not-run"
    frame["service_ms"] = np.where(ran, (frame["end_ns"] - frame["start_ns"]) / 1e6, np.nan)
    frame["wait_ms"] = np.where(ran, (frame["start_ns"] - frame["due_ns"]) / 1e6, np.nan)
    frame["latency_ms"] = np.where(ran, (frame["end_ns"] - frame["due_ns"]) / 1e6, np.nan)
    return frame


def samples_frame(run: RunData) -> pd.DataFrame:
    """One row per sample, with per-interval CPU percent (100 = one full core) and ``t_ns``
    relative to the cell's t0 (negative: the child was still starting up)."""
    parts = []
    t0s = {c["cell_id"]: c.get("t0_perf_ns") for c in run.cells}
    for cell_id, samples in run.samples.items():
        if not samples:
            continue
        frame = pd.DataFrame(samples)
        frame["cell"] = cell_id
        t0 = t0s.get(cell_id)
        frame["t_ns"] = frame["t_abs_ns"] - t0 if t0 is not None else np.nan
        frame = frame.sort_values(["series", "t_abs_ns"])
        if "cpu_user" in frame:  # absent when only the "db" series was sampled
            frame["cpu_pct"] = pd.concat([_trailing_cpu_pct(g) for _, g in
                                          frame.groupby("series", sort=False)])
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


CPU_WINDOW_S = 1.0


def _trailing_cpu_pct(series: pd.DataFrame) -> pd.Series:
    """CPU percent of one series over the trailing second at each sample.

    Not per 0.1 s tick: the sampler finds new child processes up to ~1 s late, and their
    CPU until then would land in a single tick as an impossible spike (1500 % on 2 cores).
    Over a window as long as the discovery delay, a peak is a rate the tree really ran at.
    """
    t = series["t_abs_ns"].to_numpy(dtype=float) / 1e9
    cpu = (series["cpu_user"] + series["cpu_sys"]).to_numpy(dtype=float)
    start = np.searchsorted(t, t - CPU_WINDOW_S, side="right") - 1
    start = np.clip(start, 0, None)
    span = t - t[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(span > 0, (cpu - cpu[start]) / span * 100, np.nan)
    return pd.Series(np.clip(pct, 0, None), index=series.index)


def _window_stats(samples: pd.DataFrame, makespan: float | None) -> dict[str, Any]:
    """Resource use of one series over the cell's measured window (t0 .. t0 + makespan)."""
    if samples.empty:
        return {}
    t = samples["t_ns"].astype("float") / 1e9
    end = makespan if makespan is not None else t.max()
    inside = samples[(t >= 0) & (t <= end + 0.15)]
    before = samples[t < 0]
    ref = before.iloc[[-1]] if not before.empty else samples.iloc[[0]]
    last = inside.iloc[[-1]] if not inside.empty else samples.iloc[[-1]]
    span = (float(last["t_abs_ns"].iloc[0]) - float(ref["t_abs_ns"].iloc[0])) / 1e9

    def delta(col: str) -> float:
        return float(last[col].iloc[0] - ref[col].iloc[0]) if col in samples else 0.0

    cpu_s = delta("cpu_user") + delta("cpu_sys")
    window = inside if not inside.empty else samples
    return {
        "cpu_s": cpu_s,
        "cpu_user_s": delta("cpu_user"),
        "cpu_sys_s": delta("cpu_sys"),
        "cpu_mean_pct": cpu_s / span * 100 if span > 0 else np.nan,
        "cpu_peak_pct": float(window["cpu_pct"].max()) if "cpu_pct" in window else np.nan,
        # Peaks over the window too: the child's start-up (imports) is not the mode's memory.
        # PSS counts shared pages once; summed RSS counts them once per process.
        "memory_peak_mb": float(window["pss"].max()) / 2**20 if "pss" in window
        else float(window["rss"].max()) / 2**20,
        "rss_peak_mb": float(window["rss"].max()) / 2**20,
        "uss_peak_mb": float(window["uss"].max()) / 2**20,
        "read_mb": delta("read_bytes") / 2**20,
        "write_mb": delta("write_bytes") / 2**20,
        "read_chars_mb": delta("read_chars") / 2**20,
        "write_chars_mb": delta("write_chars") / 2**20,
        "ctx_switches": delta("ctx_vol") + delta("ctx_invol"),
        "threads_peak": float(window["threads"].max()),
        "procs_peak": float(window["procs"].max()),
        "samples": int(len(samples)),
    }


# Per-cell deltas of PostgreSQL's cumulative counters (series "db", see pg_stats.py).
_DB_COUNTERS = {"db_commits": "xact_commit", "db_rollbacks": "xact_rollback",
                "db_deadlocks": "deadlocks", "db_conflicts": "conflicts",
                "db_blks_read": "blks_read", "db_blks_hit": "blks_hit",
                "db_temp_bytes": "temp_bytes", "db_tup_inserted": "tup_inserted",
                "db_tup_updated": "tup_updated", "db_tup_deleted": "tup_deleted"}
_DB_PEAKS = {"db_lock_wait_peak": "lock_waits", "db_connections_peak": "connections",
             "db_active_peak": "active", "db_max_connections": "max_connections"}


def _increase(values: pd.Series) -> float:
    """Total increase of a cumulative counter; a drop is a reset (a crashed server) after
    which the counter counts from zero again."""
    values = values.dropna()
    steps = values.diff().dropna()
    return float(np.where(steps < 0, values.iloc[1:], steps).sum()) if len(steps) else 0.0


def db_stats(samples: pd.DataFrame) -> dict[str, Any]:
    """PostgreSQL's own view of one cell (series "db"): counter deltas from the first sample
    (before the child started) to the last (after its sessions ended), the observer's own
    transactions taken out of the commits, and peaks of the workload's sessions."""
    up = samples[samples["db_up"] == 1].sort_values("t_abs_ns")
    stats: dict[str, Any] = {"db_down_samples": int((samples["db_up"] == 0).sum())}
    if up.empty:
        return stats
    for name, column in _DB_COUNTERS.items():
        stats[name] = _increase(up[column])
    stats["db_commits"] -= _increase(up["own_xacts"])
    stats.update({name: float(up[column].max()) for name, column in _DB_PEAKS.items()})
    return stats


def declared_metrics(run: RunData) -> list[dict[str, Any]]:
    """The scenario's declared metrics as recorded in run.json (name, unit, direction)."""
    return list((run.run.get("scenario") or {}).get("metrics") or [])


def cell_metrics(checks: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> dict[str, float]:
    """A cell's declared metric values; a cell whose checks name a metric wrongly (an old
    or hand-edited record) reports none rather than failing the whole report."""
    try:
        return metric_values(checks, metrics)
    except ScenarioError:
        return {}


def _exact_cpu(row: dict[str, Any], cell: dict[str, Any]) -> None:
    """A single-process tree's CPU from its rusage over the run phase (its own and that of
    the children it reaped, as the samples count it): exact, where 10 Hz samples are not. A
    pool's workers, alive through the run phase, are outside that rusage: samples count them."""
    info = cell.get("info") or {}
    if "cpu_self_user_s" not in info or not cell.get("makespan_s"):
        return
    if row.get("procs_peak", 1) > 1:
        return
    row["cpu_user_s"], row["cpu_sys_s"] = info["cpu_self_user_s"], info["cpu_self_sys_s"]
    row["cpu_s"] = row["cpu_user_s"] + row["cpu_sys_s"]
    row["cpu_mean_pct"] = row["cpu_s"] / cell["makespan_s"] * 100


def _cluster_usage(row: dict[str, Any], cell: dict[str, Any]) -> None:
    """A distributed executor's workers, measured on the cluster itself: outside the
    cell's tree when the cluster is remote (then the tree columns are the client's)."""
    usage = (cell.get("info") or {}).get("cluster_usage") or {}
    if usage and cell.get("makespan_s"):
        row["cluster_cpu_mean_pct"] = usage["cpu_s"] / cell["makespan_s"] * 100
        row["cluster_memory_peak_mb"] = usage["memory_peak_mb"]
        row["cluster_remote"] = (cell.get("info") or {}).get("cluster") not in (None, "local")


def counted(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells that count: every cell but the warm-up."""
    return cells[~cells["warmup"].astype(bool)] if not cells.empty else cells


def cells_frame(run: RunData, samples: pd.DataFrame | None = None,
                units: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell: outcome, makespan, verify, bound and resource use of its tree and of
    each service series (columns prefixed ``svc_<name>_``)."""
    samples = samples_frame(run) if samples is None else samples
    units = units_frame(run) if units is None else units
    rows = []
    metrics = declared_metrics(run)
    # Split once: a mask over every row per cell would cost cells x rows.
    units_by_cell = dict(tuple(units.groupby("cell"))) if not units.empty else {}
    samples_by_cell = dict(tuple(samples.groupby("cell"))) if not samples.empty else {}
    for cell in run.cells:
        row: dict[str, Any] = {k: cell.get(k) for k in (
            "cell_id", "index", "mode", "label", "repeat", "warmup", "status", "makespan_s",
            "setup_s", "teardown_s", "censored", "workers", "simplicity", "units_total",
            "units_ok", "units_error", "units_not_run", "bound_s", "message")}
        checks = cell.get("verify") or []
        row["verify_ok"] = all(c["ok"] for c in checks) if checks else None
        row["verify_failed"] = "; ".join(c["name"] for c in checks if not c["ok"])
        row.update({f"metric_{name}": value
                    for name, value in cell_metrics(checks, metrics).items()})
        row["sampler_cpu_fraction"] = cell.get("sampler", {}).get("cpu_fraction")
        cell_units = units_by_cell.get(cell["cell_id"], units.iloc[0:0])
        row["retries"] = int((cell_units["attempts"].clip(lower=1) - 1).sum()) \
            if not cell_units.empty else 0
        rows.append(row)
        if samples.empty:
            continue
        mine = samples_by_cell.get(cell["cell_id"], samples.iloc[0:0])
        for series, group in mine.groupby("series"):
            if series == "db":
                row.update(db_stats(group))
                continue
            stats = _window_stats(group, cell.get("makespan_s"))
            prefix = "" if series == "tree" else f"svc_{series}_"
            row.update({prefix + k: v for k, v in stats.items()})
        _exact_cpu(row, cell)
        _cluster_usage(row, cell)
    return pd.DataFrame(rows)
