"""The comparison table on the terminal (rich): the compact columns that decide.

The full table (every column) is in table.md, table.csv and the HTML report; a terminal
or a CI log gets the columns a reader decides by, narrow enough to read at 80 columns.
Cells wrap instead of being cut to "...". When output is not a terminal, the width is
``COLUMNS`` if set, else wide enough for the compact table (rich would assume 80).
"""

from __future__ import annotations

import os

import pandas as pd
from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 140
_LEFT = ("mode", "errors", "verify")


def render(display: pd.DataFrame, console: Console, columns: list[str], title: str = "",
           notes: list[str] | None = None) -> None:
    """Print the compact comparison table (``columns`` of ``display``) and the notes on
    what its numbers mean."""
    shown = [c for c in columns if c in display.columns]
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, PIPE_WIDTH)
    table = Table(title=title, show_lines=False, header_style="bold", pad_edge=False)
    for column in shown:
        table.add_column(column, justify="left" if column in _LEFT else "right",
                         overflow="fold")
    for _, row in display[shown].iterrows():
        table.add_row(*(_styled(column, str(value)) for column, value in row.items()))
    console.print(table)
    for note in notes or []:
        console.print(f"  {note}", style="dim", highlight=False)


def _styled(column: str, value: str) -> str:
    if column == "verify" and value.startswith("FAIL"):
        return f"[bold red]{value}[/]"
    if column == "efficiency vs bound" and value == "HARNESS ERROR":
        return f"[bold red]{value}[/]"
    if column == "verify" and value == "unverified":
        return f"[yellow]{value}[/]"
    return value
