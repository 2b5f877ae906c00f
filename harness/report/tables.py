"""Render a run folder's comparison table: terminal, ``table.md`` and ``table.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.markup import escape

from harness.analysis.table import (COLUMNS, TERMINAL_COLUMNS, comparison_table, display_frame,
                                    table_notes, terminal_columns)
from harness.records import load_run
from harness.report import markdown, terminal

if TYPE_CHECKING:
    from harness.analysis.verdict import Analysis, Verdict


def write_tables(run_dir: Path, console: Console | None = None,
                 analysis: "Analysis | None" = None) -> pd.DataFrame:
    """Build the table from the records on disk (or take an analysis of them), save it
    beside run.json, print it."""
    run = analysis.run if analysis is not None else load_run(run_dir)
    table = analysis.table if analysis is not None else comparison_table(run)
    display = display_frame(table)
    notes = table_notes(table)
    full = display.drop(columns=[c for c in TERMINAL_COLUMNS if c not in COLUMNS.values()],
                        errors="ignore")
    (Path(run_dir) / "table.md").write_text(
        markdown.table_markdown(full) + "".join(f"\n- {n}" for n in notes) + "\n",
        encoding="utf-8")
    table.to_csv(Path(run_dir) / "table.csv", index=False)
    if console is not None:
        scenario = run.run.get("scenario", {})
        params = ", ".join(f"{k}={v}" for k, v in (scenario.get("params") or {}).items())
        terminal.render(display, console, terminal_columns(table),
                        title=f"{scenario.get('name')} ({params})", notes=notes)
    return table


def print_verdict(verdict: "Verdict", console: Console) -> None:
    """The verdict under the table: the recommendation (or why there is none), why, the
    other modes' statuses and the warnings."""
    from harness.analysis.verdict import headline

    title, detail = headline(verdict.to_dict())
    colour = {"recommended": "green", "inconclusive": "yellow"}.get(verdict.outcome, "red")
    console.print(f"[bold {colour}]{escape(title)}[/]" + (f": {escape(detail)}" if detail else ""),
                  highlight=False)
    for label, status in verdict.status.items():
        if status != "recommended":
            console.print(f"  {label}: {status}: " + "; ".join(verdict.reasons[label]),
                          markup=False, highlight=False)
    for warning in verdict.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
