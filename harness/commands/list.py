"""``harness list [SCENARIO]``: one line per scenario, executor and policy; or one
scenario's parameters (and declared metrics) as a table.

Listing loads every scenario file, so it is also the check of a file being written: a
broken one (a misspelt hook, a wrong signature, a bad Param default) is reported on one
line on stderr and the command exits 2, after listing the others.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from harness.commands.exitcodes import EXIT_OK, EXIT_USAGE

NAME = "list"
HELP = "scenarios, executors and policies (one line each); `harness list NAME` shows a scenario's parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", help="show this scenario's parameters")


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _scenarios(console: Console) -> int:
    """One line per scenario; returns how many could not be loaded."""
    from harness.discovery import discover, load_path

    console.print("[bold]scenarios[/]  (harness list NAME: its parameters)")
    broken = 0
    for name, path in discover().items():
        try:
            scenario = load_path(path)
        except Exception as exc:  # one broken file must not hide the others
            broken += 1
            console.print(f"  {name:<16} [red]cannot load: {_one_line(str(exc), 60)}[/]")
            print(f"harness: error: {exc}", file=sys.stderr)
            continue
        note = "" if scenario.verified else " (unverified: no verify)"
        console.print(f"  {name:<16} "
                      f"{_one_line(scenario.description + note, console.width - 20)}",
                      markup=False, highlight=False)
    return broken


def _modes(console: Console) -> None:
    from harness.executors import all_executors
    from harness.modes import ALIASES, DEFAULT_MODES
    from harness.policies import all_policies

    console.print("[bold]executors[/]  (--modes EXECUTOR[+POLICY], e.g. threads+interleave)")
    for name, cls in all_executors().items():
        ok, why = cls.available()
        note = "" if ok else f" (unavailable: {why})"
        console.print(f"  {name:<16} {_one_line(cls.description + note, console.width - 20)}",
                      markup=False, highlight=False)
    console.print("[bold]policies[/]")
    for name, cls in all_policies().items():
        console.print(f"  {name:<16} {_one_line(cls.description, console.width - 20)}",
                      markup=False, highlight=False)
    aliases = ", ".join(f"{a} = {m}" for a, m in ALIASES.items())
    console.print(f"[bold]aliases[/]  {aliases}; default modes: {', '.join(DEFAULT_MODES)}",
                  highlight=False)


def _parameters(console: Console, name: str) -> None:
    from harness.discovery import load

    scenario = load(name)
    console.print(f"[bold]{scenario.name}[/]: {scenario.description}", highlight=False)
    table = Table("parameter", "default", "allowed", "meaning", header_style="bold")
    for p in scenario.params.values():
        allowed = ", ".join(map(str, p.choices)) if p.choices else " ".join(
            x for x in (f">= {p.minimum:g}" if p.minimum is not None else "",
                        f"<= {p.maximum:g}" if p.maximum is not None else "") if x)
        table.add_row(p.name, repr(p.default), allowed, p.help)
    console.print(table)
    if scenario.metrics:
        metrics = Table("metric", "unit", "better", "meaning", header_style="bold")
        for m in scenario.metrics:
            metrics.add_row(m.name, m.unit, "lower" if m.lower_is_better else "higher", m.help)
        console.print(metrics)
    if not scenario.verified:
        console.print("[yellow]unverified[/]: no verify(ctx), so no mode can show its "
                      "results correct")
    console.print(f"set with --param NAME=VALUE, e.g. harness run {scenario.name} "
                  f"--param {next(iter(scenario.params), 'key')}=...", highlight=False)


def run(args: argparse.Namespace, console: Console) -> int:
    if args.scenario:
        _parameters(console, args.scenario)
        return EXIT_OK
    broken = _scenarios(console)
    _modes(console)
    return EXIT_USAGE if broken else EXIT_OK
