"""Helpers for tests that drive the real runner in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.records import RunData, load_run
from harness.runner import Runner


def run_scenario(out: Path, scenario: str, modes: list[str], params: dict[str, Any] | None = None,
                 **config: Any) -> RunData:
    """Run ``scenario`` through the real runner (fresh child per cell) and load the results."""
    cfg = RunConfig(scenario=scenario, modes=modes, repeat=config.pop("repeat", 1),
                    warmup=config.pop("warmup", False),
                    params={k: str(v) for k, v in (params or {}).items()}, out=out,
                    progress=False, **config)
    return load_run(Runner(cfg).run())


def cell_units(run: RunData, cell_id: str) -> list[dict[str, Any]]:
    return run.units[cell_id]
