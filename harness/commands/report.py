"""``harness report RUN_DIR``: re-render a results folder from disk.

Always prints the comparison table and the verdict and saves ``table.md``/``table.csv``;
``--format md,html,json,csv`` also writes ``report.<format>`` (or ``--output``).
The budget options here and in ``run``/``nightly`` share one definition.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.commands.exitcodes import EXIT_HARNESS, EXIT_OK

NAME = "report"
HELP = "re-render a results folder: table, verdict, and reports (md, html, json, csv)"
FORMATS = ("md", "html", "json", "csv")  # the keys of harness.report.export.RENDERERS (not imported: matplotlib is heavy)


def share(maximum: float | None) -> Any:
    """argparse type: ``0.05`` or ``5%``, between 0 and ``maximum``."""
    def parse(text: str) -> float:
        try:
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a fraction like 0.05 or "
                                             "a percentage like 5%") from None
        if value < 0 or (maximum is not None and value > maximum):
            limit = f"be between 0 and {maximum:.0%}" if maximum is not None else "not be negative"
            raise argparse.ArgumentTypeError(f"{text!r}: must {limit}")
        return value
    return parse


def add_budget_arguments(p: argparse.ArgumentParser, recorded: bool) -> None:
    """The verdict's budgets; ``recorded``: default to what the run recorded."""
    was = "default: as recorded in the run" if recorded else None
    p.add_argument("--error-budget", type=share(1.0), default=None if recorded else 0.0,
                   metavar="SHARE", help="fraction of units allowed to fail or not run "
                   "before a mode is discarded, e.g. 0.01 or 1%% "
                   f"({was or 'default 0: none'})")
    p.add_argument("--p99-budget", type=float, default=None, metavar="MS",
                   help="discard modes whose p99 latency from due exceeds MS "
                   f"({was or 'default: none'})")
    p.add_argument("--min-gain", type=share(None), default=None if recorded else 0.2,
                   metavar="SHARE", help="the gain a more complex mode must show, significantly, "
                   "to be recommended over a simpler one (ratio of medians - 1); also warns "
                   "when a mode gains less than this over the baseline while adding errors, "
                   f"tail latency or memory ({was or 'default 20%%'})")
    p.add_argument("--budget", action="append", default=[], metavar="METRIC=LIMIT",
                   help="a budget on a metric the scenario declares (see `harness list NAME`), "
                   "e.g. --budget duplicates=0: a mode over it (under it, where higher is "
                   "better) is discarded; repeatable")


def parse_budgets(items: list[str]) -> dict[str, float]:
    """``["duplicates=0", ...]`` to ``{"duplicates": 0.0}``; a bad item names itself."""
    from harness.config import ConfigError

    budgets = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            budgets[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--budget {item!r}: expected METRIC=NUMBER, e.g. duplicates=0")
    return budgets


def budget_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"error_budget": args.error_budget, "p99_budget_ms": args.p99_budget,
            "min_gain": args.min_gain, "metrics": parse_budgets(args.budget) or None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a results/<scenario>/<run-id>/ folder")
    parser.add_argument("--format", default="", metavar="FMT[,FMT]",
                        help=f"also write reports: {', '.join(FORMATS)} (comma-separated); "
                        "md is the design-review attachment, html adds plots")
    parser.add_argument("--output", default=None, metavar="PATH",
                        help="where to write the report (one --format only; - = stdout; "
                        "default RUN_DIR/report.<format>)")
    add_budget_arguments(parser, recorded=True)


def parse_formats(text: str) -> list[str]:
    from harness.config import ConfigError

    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"--format {unknown[0]!r}: one of {', '.join(FORMATS)}")
    return formats


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.analysis.verdict import analyze
    from harness.config import ConfigError
    from harness.partial import incomplete_reason
    from harness.records import load_run
    from harness.report.export import RENDERERS, write_report
    from harness.report.tables import print_verdict, write_tables

    formats = parse_formats(args.format)
    if args.output and len(formats) != 1:
        raise ConfigError("--output needs exactly one --format")
    data = load_run(args.run_dir)
    analysis = analyze(data, **budget_overrides(args))
    incomplete = incomplete_reason(data.run, data.cells)
    if args.output == "-":
        sys.stdout.write(RENDERERS[formats[0]](analysis))
        return EXIT_HARNESS if incomplete else EXIT_OK
    write_tables(args.run_dir, console, analysis)
    print_events(data.run, console)
    print_verdict(analysis.verdict, console)
    for fmt in formats:
        console.print(f"report: {write_report(analysis, fmt, args.output)}")
    if incomplete:  # what finished is shown above; the run as a whole is no result
        console.print(f"[bold red]{incomplete}[/]", highlight=False)
        return EXIT_HARNESS
    return EXIT_OK


def print_events(run: dict[str, Any], console: Console) -> None:
    """Service restarts and outages recorded between cells (run.json ``events``)."""
    for event in run.get("events") or []:
        console.print(f"[yellow]service event:[/] {event.get('service')} "
                      f"{event.get('event')} before cell {event.get('before_cell')}: "
                      f"{event.get('detail', '')}", highlight=False)
