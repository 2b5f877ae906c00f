"""Plots for the HTML report, as embedded PNG data URIs (matplotlib, Agg, imported lazily).

Each function takes an :class:`~harness.analysis.verdict.Analysis` and returns a
:class:`Plot` (or None when the run has nothing to show): makespan per mode with intervals,
unit latency CDF per mode, CPU and RSS timelines per mode, per-group latency of grouped
modes, and the service/database series where present. Figures are built with
``matplotlib.figure.Figure`` (no pyplot global state), so rendering is safe anywhere.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from harness.analysis.frames import counted
from harness.analysis.verdict import Analysis

INSTALL_HINT = "plots need matplotlib: pip install matplotlib"
TIME_FIELDS = {"t_abs_ns", "t_ns", "cell", "series", "cpu_user", "cpu_sys"}
MAX_SERVICE_METRICS = 6
PREFERRED_METRICS = ("cpu_pct", "rss", "xact_commit", "xact_rollback", "tup_inserted",
                     "tup_updated", "lock_waits", "active", "connections", "deadlocks")
SKIPPED_METRICS = {"db_up", "own_xacts", "max_connections", "procs"}  # bookkeeping
BYTE_GAUGES = {"rss", "uss"}
GAUGES = {"cpu_pct", "threads", "connections", "lock_waits", "active"} | BYTE_GAUGES


@dataclass
class Plot:
    title: str
    caption: str
    data_uri: str  # data:image/png;base64,...


def _figure(width: float = 9.0, height: float = 4.0) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _encode(fig: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(fig)).decode("ascii")


def _log_axis(axis: Any, set_scale: Callable[[str], None]) -> None:
    """Log scale with plain major labels and no minor labels (they collide)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    set_scale("log")
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(NullFormatter())


def _counted(analysis: Analysis) -> pd.DataFrame:
    return counted(analysis.cells)


def _labels(analysis: Analysis) -> list[str]:
    return list(analysis.table["mode"]) if not analysis.table.empty else []


def representative_cells(analysis: Analysis) -> dict[str, str]:
    """Per mode, the counted cell whose makespan is closest to the mode's median."""
    chosen = {}
    counted = _counted(analysis)
    for row in analysis.table.to_dict("records"):
        mine = counted[counted["label"] == row["mode"]].dropna(subset=["makespan_s"])
        if mine.empty:
            continue
        distance = (mine["makespan_s"] - row["wall_s"]).abs()
        chosen[row["mode"]] = str(mine.loc[distance.idxmin(), "cell_id"])
    return chosen


def makespan_plot(analysis: Analysis) -> Plot | None:
    counted = _counted(analysis)
    labels = _labels(analysis)
    if counted.empty or not labels:
        return None
    fig = _figure(9, 0.8 + 0.55 * len(labels))
    ax = fig.add_subplot()
    legend = "censored (did not finish)"
    for y, row in enumerate(analysis.table.to_dict("records")):
        mine = counted[counted["label"] == row["mode"]]
        done = mine[mine["status"] == "ok"]
        cut = mine[mine["status"] != "ok"]
        ax.scatter(done["makespan_s"], [y] * len(done), color="tab:blue", s=18, zorder=3)
        if len(cut):
            ax.scatter(cut["makespan_s"], [y] * len(cut), color="tab:red", marker=">", s=40,
                       zorder=3, label=legend)
            legend = "_"  # one legend entry
        high = row["wall_ci_high"] if np.isfinite(row["wall_ci_high"]) \
            else mine["makespan_s"].max()  # censored: no upper end; draw to the last cell
        ax.plot([row["wall_ci_low"], high], [y, y], color="black", lw=2, zorder=2)
        ax.plot([row["wall_s"]], [y], marker="|", color="black", ms=18, mew=3, zorder=4)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    values = counted["makespan_s"].dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() > 20:
        _log_axis(ax.xaxis, ax.set_xscale)
    ax.set_xlabel("makespan (s)")
    ax.grid(axis="x", alpha=0.3)
    if legend == "_":
        ax.legend(loc="lower right", fontsize=8)
    return Plot("Makespan per mode", "Dots: counted cells; bar: interval of the median; "
                "tick: median. Red triangles: cells that did not finish (lower bounds).",
                _encode(fig))


def _ran_units(analysis: Analysis) -> pd.DataFrame:
    units = analysis.units
    if units.empty:
        return units
    counted = set(_counted(analysis)["cell_id"])
    labels = dict(zip(analysis.cells["cell_id"], analysis.cells["label"]))
    ran = units[units["cell"].isin(counted) & units["latency_ms"].notna()].copy()
    ran["label"] = ran["cell"].map(labels)
    return ran


def latency_cdf_plot(analysis: Analysis) -> Plot | None:
    ran = _ran_units(analysis)
    if ran.empty:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for label in _labels(analysis):
        values = np.sort(ran.loc[ran["label"] == label, "latency_ms"].to_numpy())
        if len(values):
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                    label=label)
    positive = ran["latency_ms"][ran["latency_ms"] > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        _log_axis(ax.xaxis, ax.set_xscale)
    ax.set_xlabel("unit latency (ms): end - due, queueing included")
    ax.set_ylabel("fraction of units")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Plot("Unit latency CDF per mode", "Every counted unit that finished; latency "
                "counts from when the unit was due (t0 for a batch), so waiting in a queue "
                "is included, in every mode alike.",
                _encode(fig))


def _timeline(analysis: Analysis, column: str, scale: float, ylabel: str, title: str,
              series: str = "tree") -> Plot | None:
    samples = analysis.samples
    if samples.empty or column not in samples:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    for label, cell in representative_cells(analysis).items():
        mine = samples[(samples["cell"] == cell) & (samples["series"] == series)]
        mine = mine.dropna(subset=[column, "t_ns"])
        if not mine.empty:
            ax.plot(mine["t_ns"] / 1e9, mine[column] / scale, label=label, lw=1.2)
            drawn = True
    if not drawn:
        return None
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("time since the cell's t0 (s); before 0 the process was starting")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Plot(title, "One representative cell per mode (makespan closest to the median); "
                "whole process tree, sampled by the parent.", _encode(fig))


def cpu_plot(analysis: Analysis) -> Plot | None:
    return _timeline(analysis, "cpu_pct", 1.0, "CPU % (100 = one core)", "CPU over time")


def rss_plot(analysis: Analysis) -> Plot | None:
    column = "pss" if "pss" in analysis.samples else "rss"
    return _timeline(analysis, column, 2**20, f"{column.upper()} (MB)",
                     f"Memory ({column.upper()}) over time")


def group_latency_plot(analysis: Analysis) -> Plot | None:
    ran = _ran_units(analysis)
    if ran.empty:
        return None
    several = ran.groupby("label")["group"].nunique()
    grouped = [label for label in _labels(analysis) if several.get(label, 0) > 1][:6]
    if not grouped:
        return None
    fig = _figure(9, 3.2 * len(grouped))
    for i, label in enumerate(grouped):
        ax = fig.add_subplot(len(grouped), 1, i + 1)
        mine = ran[ran["label"] == label]
        groups = sorted(mine["group"].unique())
        ax.boxplot([mine.loc[mine["group"] == g, "latency_ms"] for g in groups],
                   tick_labels=groups, showfliers=True)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("latency (ms)")
        ax.grid(axis="y", alpha=0.3)
    return Plot("Per-group latency", "Unit latency (end - due) per group, every counted "
                "cell, for modes whose units came in several groups.", _encode(fig))


def _metrics(frame: pd.DataFrame) -> list[str]:
    """The series' columns worth a panel: numeric, measured, not constant; the ones that
    tell most first (CPU and memory of a service process, PostgreSQL's own activity)."""
    numeric = [c for c in frame.columns if c not in TIME_FIELDS | SKIPPED_METRICS
               and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].nunique() > 1]
    order = {name: i for i, name in enumerate(PREFERRED_METRICS)}
    return sorted(numeric, key=lambda c: (order.get(c, len(order)), c))[:MAX_SERVICE_METRICS]


def service_plots(analysis: Analysis) -> list[Plot]:
    """One figure per service or database series: each metric over time per mode. Counters
    (never decreasing within a cell) are shown as rates per second."""
    samples = analysis.samples
    if samples.empty:
        return []
    plots = []
    cells = representative_cells(analysis)
    for series in sorted(set(samples["series"]) - {"tree"}):
        frame = samples[(samples["series"] == series) & samples["cell"].isin(cells.values())]
        metrics = _metrics(frame)
        if frame.empty or not metrics:
            continue
        fig = _figure(9, 2.2 * len(metrics))
        for i, metric in enumerate(metrics):
            ax = fig.add_subplot(len(metrics), 1, i + 1)
            for label, cell in cells.items():
                mine = frame[frame["cell"] == cell].dropna(subset=[metric, "t_ns"])
                if len(mine) < 2:
                    continue
                values, t = mine[metric].to_numpy(float), mine["t_ns"].to_numpy(float) / 1e9
                counter = metric not in GAUGES and bool(np.all(np.diff(values) >= 0))
                if counter:
                    values, t = np.diff(values) / np.maximum(np.diff(t), 1e-9), t[1:]
                scale = 2**20 if metric in BYTE_GAUGES else 1
                ax.plot(t, values / scale, label=label, lw=1.1)
                ax.set_ylabel(metric + (" MB" if scale > 1 else "/s" if counter else ""),
                              fontsize=8)
            ax.grid(alpha=0.3)
        fig.axes[0].legend(fontsize=7)
        fig.axes[-1].set_xlabel("time since the cell's t0 (s)")
        plots.append(Plot(f"Series: {series}", f"Samples of the {series} series in one "
                          "representative cell per mode.", _encode(fig)))
    return plots


LIMIT_PLOT_GROUPS = 12  # more lines than this cannot be told apart; the title says so


def limit_plot(analysis: Analysis) -> Plot | None:
    """An adaptive policy's concurrency limit per group over the run phase (a policy that
    records ``limit_trajectory`` in its info), with the limit shared by all groups where it
    records one (``shared_trajectory``), for each mode's representative cell."""
    cells = {c["cell_id"]: c for c in analysis.run.cells}
    chosen = [(label, cells[cid]) for label, cid in representative_cells(analysis).items()
              if cid in cells and (cells[cid].get("info") or {}).get("limit_trajectory")]
    if not chosen:
        return None
    fig = _figure(9, 3.2 * len(chosen))
    for ax, (label, cell) in zip(np.atleast_1d(fig.subplots(len(chosen), 1, squeeze=False)[:, 0]), chosen):
        info, end_s = cell["info"], cell.get("makespan_s")
        by_group: dict[str, list[tuple[float, float]]] = {}
        for t_ns, group, limit in info["limit_trajectory"]:
            by_group.setdefault(group, []).append((t_ns / 1e9, limit))
        for group, series in list(by_group.items())[:LIMIT_PLOT_GROUPS]:
            ax.step(*zip(*_held_to(series, end_s)), where="post", label=group, alpha=0.8)
        shared = [(t_ns / 1e9, limit) for t_ns, limit in info.get("shared_trajectory") or []]
        if shared:
            ax.step(*zip(*_held_to(shared, end_s)), where="post", label="all groups",
                    color="black", lw=2)
        hidden = len(by_group) - LIMIT_PLOT_GROUPS
        ax.set(title=label + (f" (the first {LIMIT_PLOT_GROUPS} of {len(by_group)} groups "
                              "shown)" if hidden > 0 else ""),
               xlabel="time since t0 (s)", ylabel="concurrency limit")
        ax.grid(alpha=0.3)
        if hidden <= 0:
            ax.legend(fontsize=7, ncol=4)
    return Plot("Adaptive concurrency limit", "Per group (supplier), and over all groups in "
                "black: a limit rises while service stays near its unloaded minimum and is "
                "cut on errors, 429s (a group's own) or latency growth.", _encode(fig))


def _held_to(series: list[tuple[float, float]], end_s: float | None) -> list[tuple[float, float]]:
    """A trajectory records changes only: hold its last value to the end of the run phase,
    so that a limit that settled early is not read as one that stopped."""
    if end_s is None or not series or series[-1][0] >= end_s:
        return series
    return [*series, (end_s, series[-1][1])]


PLOTS: tuple[Callable[[Analysis], Plot | None], ...] = (
    makespan_plot, latency_cdf_plot, cpu_plot, rss_plot, group_latency_plot, limit_plot)


def all_plots(analysis: Analysis) -> list[Plot]:
    """Every plot the run has data for, in report order."""
    plots = [p for p in (fn(analysis) for fn in PLOTS) if p is not None]
    return plots + service_plots(analysis)


def trend_png(history: Any) -> bytes:
    """A metric over time per mode (one marker shape per fingerprint), as PNG bytes."""
    fig = _figure(10, 4.5)
    ax = fig.add_subplot()
    frame = history.frame.dropna(subset=["value"])
    markers = dict(zip(history.fingerprints, "osD^v<>ph*"))
    for mode, rows in frame.groupby("mode", sort=False):
        rows = rows.sort_values("run_id")
        x = rows["started_at"] if rows["started_at"].notna().all() else rows["run_id"]
        line = ax.plot(x, rows["value"], lw=1, label=mode)[0]
        for fp, part in rows.groupby("fingerprint"):
            px = part["started_at"] if part["started_at"].notna().all() else part["run_id"]
            ax.scatter(px, part["value"], marker=markers.get(fp, "o"), color=line.get_color(),
                       zorder=3)
    ax.set_ylabel(history.metric)
    ax.set_title(f"{history.scenario}: {history.metric} per run (marker shape = fingerprint)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)
