"""``harness list``: scenarios with their parameters, and modes."""

from __future__ import annotations

import argparse

from rich.console import Console

from harness.commands.exitcodes import EXIT_OK

NAME = "list"
HELP = "scenarios with their parameters, and modes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.discovery import discover, load_path
    from harness.modes import all_modes

    console.print("[bold]scenarios[/]")
    for name, path in discover().items():
        try:
            scenario = load_path(path)
        except Exception as exc:  # one broken file must not hide the others
            console.print(f"  {name}: [red]cannot load: {exc}[/]")
            continue
        console.print(f"  [bold]{name}[/]  {scenario.description}")
        for p in scenario.params.values():
            extra = f" (one of {', '.join(map(str, p.choices))})" if p.choices else ""
            console.print(f"      --param {p.name}={p.default!r}  {p.help}{extra}",
                          markup=False, highlight=False)
    console.print("[bold]modes[/]")
    for name, cls in all_modes().items():
        ok, why = cls().available()
        note = "" if ok else f"  [yellow](unavailable: {why})[/]"
        console.print(f"  [bold]{name}[/]  {cls.description}{note}")
    return EXIT_OK
