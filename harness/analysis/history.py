"""The runs of one scenario under a results root, over time, and the last comparable one.

Run ids start with their UTC start time, so sorting folder names sorts runs by time.
Folders that cannot be read (a newer schema, a half-written run.json) are listed as
skipped with the reason, never silently ignored.

One fingerprint (:func:`harness.metadata.fingerprint`) serves history, nightly and compare.
The ``fingerprint`` column is the id of each run's whole fingerprint: equal ids are always
comparable. The baseline nightly picks uses compare's own rule instead (every field both runs
recorded must match), so a run that adds a mode, or an older folder that lacks a newer field,
can still be a baseline while its id differs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.compare import comparable, counted_cells, fingerprint_id
from harness.analysis.stats import makespan_sample, summarize
from harness.analysis.table import comparison_table
from harness.records import RunData, SchemaError, load_run

LIGHT_METRIC = "wall_s"  # read from cell.json alone; other metrics load units and samples


@dataclass
class History:
    """One row per (run, mode) with the metric, plus the folders that could not be read."""

    scenario: str
    metric: str
    frame: pd.DataFrame
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def fingerprints(self) -> list[str]:
        return list(dict.fromkeys(self.frame["fingerprint"])) if not self.frame.empty else []


def run_dirs(root: Path, scenario: str) -> list[Path]:
    """Run folders of ``scenario`` under ``root``, oldest first."""
    folder = Path(root) / scenario
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "run.json").exists())


def _rows(path: Path, metric: str) -> list[dict[str, Any]]:
    if metric == LIGHT_METRIC:
        run = load_run(path, details=False)
        cells = counted_cells(run)
        timeout = (run.run.get("config") or {}).get("timeout_s")
        values = {}
        for label in dict.fromkeys(cells["label"]):
            summary = summarize(makespan_sample(cells[cells["label"] == label], timeout))
            values[label] = (summary.median, summary.median_is_bound)
    else:
        run = load_run(path)
        table = comparison_table(run)
        if metric not in table:
            raise KeyError(f"no metric {metric!r} in the comparison table")
        values = {r["mode"]: (r[metric], False) for r in table.to_dict("records")}
    base = {"run_id": run.run.get("run_id"), "path": str(path),
            "started_at": pd.to_datetime(run.run.get("started_at") or None, utc=True),
            "status": run.run.get("status"), "fingerprint": fingerprint_id(run)}
    return [{**base, "mode": label, "value": value, "is_bound": bound}
            for label, (value, bound) in values.items()]


def load_history(root: Path, scenario: str, metric: str = LIGHT_METRIC) -> History:
    """Every readable run of ``scenario`` with ``metric`` per mode."""
    rows, skipped = [], []
    for path in run_dirs(root, scenario):
        try:
            rows += _rows(path, metric)
        except (SchemaError, json.JSONDecodeError, OSError, KeyError) as exc:
            skipped.append((path, str(exc)))
    frame = pd.DataFrame(rows, columns=["run_id", "path", "started_at", "status",
                                        "fingerprint", "mode", "value", "is_bound"])
    return History(scenario, metric, frame, skipped)


def previous_comparable(root: Path, scenario: str, candidate: Path | RunData) -> Path | None:
    """The latest finished run before ``candidate`` (a folder, or a run already loaded)
    that ``compare`` would accept: no fingerprint mismatch (the same rule, so nightly never
    picks a baseline its own comparison then refuses). Unreadable runs are said and passed
    over."""
    found = previous_comparables(root, scenario, candidate, 1)
    return found[0] if found else None


def previous_comparables(root: Path, scenario: str, candidate: Path | RunData,
                         k: int) -> list[Path]:
    """The last ``k`` such runs, oldest first (nightly pools them into one baseline)."""
    loaded = candidate if isinstance(candidate, RunData) else load_run(candidate, details=False)
    earlier = [p for p in run_dirs(root, scenario) if p.name < loaded.path.name]
    found: list[Path] = []
    for path in reversed(earlier):
        if len(found) >= k:
            break
        try:
            run = load_run(path, details=False)
        except (SchemaError, json.JSONDecodeError, OSError) as exc:
            print(f"history: skipped {path}: {exc}", file=sys.stderr)
            continue
        if run.run.get("status") == "finished" and comparable(run, loaded):
            found.append(path)
    return found[::-1]
