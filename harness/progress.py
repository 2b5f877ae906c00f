"""Progress on the terminal: one bar per cell with units done, errors and elapsed time."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)


class CellProgress:
    """Thread-safe progress display (rich); a no-op when disabled."""

    def __init__(self, console: Console, enabled: bool, total_cells: int):
        self.console = console
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.fields[cell]}", justify="left"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("units  [red]{task.fields[errors]} errors"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console, transient=False, disable=not enabled,
        )
        self._total_cells = total_cells
        self._task: Any = None

    def __enter__(self) -> "CellProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def begin(self, index: int, cell_id: str, label: str, total: int) -> None:
        name = f"[{index + 1}/{self._total_cells}] {cell_id} {label}"
        self._task = self._progress.add_task("", total=total or None, cell=name, errors=0,
                                             status="")

    def update(self, done: int, errors: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=done, errors=errors)

    def end(self, status: str, makespan_s: float | None) -> None:
        if self._task is not None:
            colour = "green" if status == "ok" else "red"
            span = f" {makespan_s:.2f}s" if makespan_s is not None else ""
            self._progress.update(self._task, status=f"[{colour}]{status}[/]{span}")
            self._progress.stop_task(self._task)
            self._task = None

    def say(self, text: str) -> None:
        self.console.print(text)
