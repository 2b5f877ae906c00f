"""``harness history SCENARIO``: the runs of a scenario over time, and a trend plot."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.commands.exitcodes import EXIT_OK, EXIT_USAGE

NAME = "history"
HELP = "list a scenario's runs over time from the results folder and plot a metric's trend"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario name (its folder under the results root)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results root "
                        "(default results/)")
    parser.add_argument("--metric", default="wall_s", help="a comparison-table column, e.g. "
                        "wall_s (default, median run phase), p99_ms (latency from due), memory_peak_mb (PSS), units_per_s")
    parser.add_argument("--fingerprint", default=None, metavar="ID", help="only runs with "
                        "this fingerprint id (runs are comparable only when it matches)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG", help="trend plot "
                        "path (default <out>/<scenario>/history-<metric>.png)")
    parser.add_argument("--no-plot", action="store_true", help="list only")


def _value(value: float, bound: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return (">=" if bound else "") + f"{value:.3f}"


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.analysis.history import load_history

    history = load_history(args.out, args.scenario, args.metric)
    for path, why in history.skipped:
        console.print(f"[yellow]skipped {path}:[/] {why}", highlight=False)
    frame = history.frame
    if args.fingerprint:
        frame = frame[frame["fingerprint"] == args.fingerprint]
        history.frame = frame
    if frame.empty:
        console.print(f"no runs of {args.scenario!r} under {args.out}")
        return EXIT_USAGE
    modes = list(dict.fromkeys(frame["mode"]))
    table = Table(title=f"{args.scenario}: {args.metric} per mode", header_style="bold")
    for column in ("run", "started", "status", "fingerprint", *modes):
        table.add_column(column, justify="right" if column in modes else "left")
    for run_id, rows in frame.groupby("run_id", sort=True):
        values = {r["mode"]: _value(r["value"], r["is_bound"]) for r in rows.to_dict("records")}
        first = rows.iloc[0]
        table.add_row(run_id, str(first["started_at"]), str(first["status"]),
                      first["fingerprint"], *(values.get(m, "-") for m in modes))
    console.print(table)
    if len(history.fingerprints) > 1:
        console.print(f"[yellow]{len(history.fingerprints)} fingerprints:[/] runs with "
                      "different fingerprints (scenario code, parameters, mode options, harness "
                      "commit, packages, services, machine) are not comparable; pick one with "
                      "--fingerprint ID, or see what differs with harness compare A B")
    if not args.no_plot:
        from harness.report.plots import trend_png

        path = args.plot or Path(args.out) / args.scenario / f"history-{args.metric}.png"
        path.write_bytes(trend_png(history))
        console.print(f"trend plot: {path}")
    return EXIT_OK
