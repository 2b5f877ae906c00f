"""Render a run folder's comparison table: terminal, ``table.md`` and ``table.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from harness.analysis.table import comparison_table, display_frame
from harness.records import load_run
from harness.report import markdown, terminal


def write_tables(run_dir: Path, console: Console | None = None) -> pd.DataFrame:
    """Build the table from the records on disk, save it beside run.json, print it."""
    run = load_run(run_dir)
    table = comparison_table(run)
    display = display_frame(table)
    (Path(run_dir) / "table.md").write_text(markdown.table_markdown(display), encoding="utf-8")
    table.to_csv(Path(run_dir) / "table.csv", index=False)
    if console is not None:
        scenario = run.run.get("scenario", {})
        params = ", ".join(f"{k}={v}" for k, v in (scenario.get("params") or {}).items())
        terminal.render(display, console, title=f"{scenario.get('name')} ({params})")
    return table
