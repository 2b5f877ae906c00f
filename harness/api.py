"""The Python API: run a scenario and analyse its results from a notebook or a script.

    from harness import run
    result = run("calibrate", modes=["serial", "threads"], params={"units": 40})
    result.table          # the comparison table (pandas), one row per mode
    result.units          # one row per unit: latency_ms (from due), service_ms, status, ...
    result.verdict.recommended

The ``harness`` command is built on these functions, so a result here is what
``harness run`` printed and ``harness report`` shows for the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from harness.analysis.verdict import Analysis, Verdict
    from harness.config import RunConfig


@dataclass
class Result:
    """A finished run: its folder, tidy frames and the verdict."""

    run_dir: Path
    analysis: "Analysis"

    @property
    def table(self) -> "pd.DataFrame":
        return self.analysis.table

    @property
    def cells(self) -> "pd.DataFrame":
        return self.analysis.cells

    @property
    def units(self) -> "pd.DataFrame":
        return self.analysis.units

    @property
    def samples(self) -> "pd.DataFrame":
        return self.analysis.samples

    @property
    def verdict(self) -> "Verdict":
        return self.analysis.verdict


def load(run_dir: str | Path, **budgets: Any) -> Result:
    """Analyse a results folder (budgets as recorded in it, unless overridden)."""
    from harness.analysis.verdict import analyze
    from harness.records import load_run

    return Result(Path(run_dir), analyze(load_run(Path(run_dir)), **budgets))


def run_config(config: "RunConfig", console: "Console | None" = None) -> Path:
    """Run a typed configuration; the results folder (RunInterrupted on Ctrl-C)."""
    from rich.console import Console

    from harness.runner import Runner

    return Runner(config, console or Console(stderr=True, quiet=not config.progress)).run()


def run(scenario: str, modes: list[str] | None = None, params: dict[str, Any] | None = None,
        *, repeat: int = 3, warmup: bool = True, workers: dict[str, int] | int | None = None,
        out: str | Path = "results", progress: bool = False, **options: Any) -> Result:
    """Run ``scenario`` (a name or a .py path) in ``modes`` (default: every default mode
    available here) and return its :class:`Result`. ``options`` are the other
    :class:`harness.config.RunConfig` fields (``timeout_s``, ``max_memory_mb``,
    ``group_cap``, ``stagger_s``, ``on_error``, ``budgets``, ...)."""
    from harness.config import RunConfig

    if isinstance(workers, int):
        workers = {"*": workers}
    config = RunConfig(scenario=scenario, modes=list(modes or []), workers=workers or {},
                       repeat=repeat, warmup=warmup,
                       params={k: str(v) for k, v in (params or {}).items()},
                       out=Path(out), progress=progress, **options)
    return load(run_config(config))
