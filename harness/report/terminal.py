"""The comparison table on the terminal (rich)."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table


def render(display: pd.DataFrame, console: Console, title: str = "") -> None:
    """Print the decisive columns of the comparison table."""
    from harness.analysis.table import TERMINAL_COLUMNS

    # Columns with nothing measured in this run (all "-") only cost width on a terminal.
    shown = [c for c in TERMINAL_COLUMNS
             if c in display.columns and not (display[c].astype(str) == "-").all()]
    display = display[shown]
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in display.columns:
        table.add_column(column, justify="left" if column in ("mode", "outcome", "errors",
                                                               "verify") else "right")
    for _, row in display.iterrows():
        styled = []
        for column, value in row.items():
            if column == "verify" and str(value).startswith("FAIL"):
                value = f"[bold red]{value}[/]"
            elif column == "outcome" and value != "ok":
                value = f"[red]{value}[/]"
            styled.append(str(value))
        table.add_row(*styled)
    console.print(table)
