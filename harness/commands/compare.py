"""``harness compare BASELINE CANDIDATE``: per-mode changes with significance; exit code.

Exit codes: 0 fine, 1 a significant regression beyond ``--threshold``, 2 a usage error
(including runs that are not comparable, unless ``--allow-mismatch``), 3 verify failed in a
mode that passed in the baseline, 4 the candidate run itself failed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.commands.exitcodes import EXIT_USAGE

NAME = "compare"
HELP = "compare a candidate run with a baseline run; exit 1 on a significant regression"
STYLES = {"regression": "bold red", "correctness": "bold red", "improvement": "green",
          "missing": "yellow", "new": "yellow"}


def add_threshold_argument(p: argparse.ArgumentParser) -> None:
    from harness.commands.report import share

    p.add_argument("--threshold", type=share(None), default=0.10, metavar="SHARE",
                   help="a significant slowdown larger than this is a regression "
                   "(default 0.10 = 10%%; also accepts 10%%); a mode whose repeats spread "
                   "more needs more: the limit is the larger of this and 2.5x the relative "
                   "spread (standard deviation / median) it showed in either run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, help="the baseline results folder")
    parser.add_argument("candidate", type=Path, help="the candidate results folder")
    add_threshold_argument(parser)
    parser.add_argument("--allow-mismatch", action="store_true", help="compare runs whose "
                        "fingerprints (scenario code, parameters, mode options, harness commit, "
                        "packages, services, machine) differ, saying what differs (default: "
                        "refuse, exit 2)")


def _median(summary) -> str:
    if summary is None or math.isnan(summary.median):
        return "-"
    high = "?" if math.isinf(summary.ci_high) else f"{summary.ci_high:.3f}"
    bound = ">=" if summary.median_is_bound else ""
    return f"{bound}{summary.median:.3f} [{summary.ci_low:.3f}-{high}]"


def print_mismatches(comparison, console: Console) -> None:
    for key, (before, after) in comparison.mismatches.items():
        console.print(f"[yellow]not comparable:[/] {key} differs: {before!r} -> {after!r}",
                      highlight=False)


def print_comparison(comparison, console: Console) -> None:
    """The per-mode changes, the fingerprint check and what the exit code means."""
    console.print(f"baseline:  {comparison.baseline}\ncandidate: {comparison.candidate}",
                  highlight=False)
    print_mismatches(comparison, console)
    table = Table(title=escape(f"makespan per mode, s: median [interval]; regression "
                               f"threshold {comparison.threshold:.0%}; ~ not significant"),
                  header_style="bold")
    for column in ("mode", "baseline", "candidate", "change (candidate / baseline)", "verify",
                   "status"):
        table.add_column(column, justify="right" if column in ("baseline", "candidate")
                         else "left")
    for c in comparison.changes:
        d = c.difference
        change = "-" if d is None else ("" if d.significant else "~ ") + d.describe()
        if d is not None and c.limit > comparison.threshold + 1e-9:
            change += f"; noise-aware limit {c.limit:.0%}"  # this mode's repeats spread
        verify = "-" if c.verify_candidate is None else (
            "ok" if c.verify_candidate else "FAIL: " + ", ".join(c.verify_failed))
        style = STYLES.get(c.status, "")
        table.add_row(*map(escape, (c.mode, _median(c.baseline), _median(c.candidate), change,
                                    verify)),
                      f"[{style}]{c.status}[/]" if style else c.status)
    console.print(table)
    for problem in comparison.harness_problems:
        console.print(f"[bold red]harness failure:[/] {problem}", highlight=False)
    meaning = {0: "no significant regression", 1: "significant regression",
               3: "correctness failure (verify failed where the baseline passed)",
               4: "the harness itself failed"}
    console.print(f"exit {comparison.exit_code}: {meaning.get(comparison.exit_code, '')}")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.analysis.compare import compare_runs
    from harness.records import load_run

    comparison = compare_runs(load_run(args.baseline, details=False),
                              load_run(args.candidate, details=False), args.threshold)
    if comparison.mismatches and not args.allow_mismatch:
        print_mismatches(comparison, console)
        console.print("the runs' fingerprints differ; pass --allow-mismatch to compare anyway")
        return EXIT_USAGE
    print_comparison(comparison, console)
    return comparison.exit_code
