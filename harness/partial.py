"""Runs whose harness died mid-cell: rebuild what they measured from the streamed records.

Unit records stream to ``units.jsonl`` as they finish, but ``cell.json`` is written when
a cell ends, so a ``kill -9`` of the harness leaves the running cell without one (and
``run.json`` saying "running"). :func:`rebuild_cells` turns each such folder back into a
cell, from its plan entry and its unit records, with the status ``parent-died``: censored
(its makespan, the last unit's end, is a lower bound), so it never enters a median as a
value. A run still registered with a live harness is in progress, not dead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.records import read_units
from harness.runstate import PARENT_DIED, default_state_dir, live_run_ids

INCOMPLETE = ("running", PARENT_DIED)


def run_is_live(run: dict[str, Any]) -> bool:
    """Whether the run's harness still runs it (registered under this project's .harness)."""
    return run.get("run_id") in live_run_ids(default_state_dir())


def _mode_fields(mode: str) -> dict[str, Any]:
    try:
        from harness.modes import ModeSpec

        spec = ModeSpec.parse(mode)
        return {"executor": spec.executor, "policy": spec.policy, "simplicity": spec.simplicity}
    except Exception:  # noqa: BLE001 - a mode this harness does not know: keep its name
        return {"executor": mode, "policy": "", "simplicity": 99.0}


def rebuild_cell(entry: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    """A cell dict (CellRecord fields) from a plan entry and the cell's streamed units."""
    units = read_units(cell_dir / "units.jsonl", entry["cell_id"], entry.get("mode", ""))
    counts: dict[str, int] = {}
    for unit in units:
        counts[unit["status"]] = counts.get(unit["status"], 0) + 1
    ends = [u["end_ns"] for u in units if u["status"] != "not-run" and u["end_ns"] >= 0]
    options = entry.get("options") or {}
    return {
        "cell_id": entry["cell_id"], "index": entry.get("index", 0), "mode": entry["mode"],
        "label": entry.get("label", entry["mode"]), "repeat": entry.get("repeat", 1),
        "warmup": entry.get("warmup", False), "status": PARENT_DIED, "exit_code": None,
        "message": f"the harness died during this cell; rebuilt from its {len(units)} "
                   "streamed unit records",
        "makespan_s": max(ends) / 1e9 if ends else None, "censored": True,
        "setup_s": None, "teardown_s": None, "workers": options.get("workers", 1),
        "options": options, "units_total": len(units), "units_ok": counts.get("ok", 0),
        "units_error": counts.get("error", 0), "units_not_run": counts.get("not-run", 0),
        "verify": [], "bound_s": None, "sampler": {}, "info": {},
        **_mode_fields(entry["mode"]),
    }


def rebuild_cells(path: Path, run: dict[str, Any], cells: list[dict[str, Any]]) -> None:
    """Add the cells of a dead run that have records but no cell.json; mark the run."""
    if run.get("status") not in INCOMPLETE:
        return
    if run.get("status") == "running":
        if run_is_live(run):
            return  # in progress: its cells are still being written
        run["status"] = PARENT_DIED
    have = {c["cell_id"] for c in cells}
    for entry in run.get("plan") or []:
        cell_dir = Path(path) / "cells" / entry["cell_id"]
        if entry["cell_id"] not in have and (cell_dir / "units.jsonl").exists():
            cells.append(rebuild_cell(entry, cell_dir))


def incomplete_reason(run: dict[str, Any], cells: list[dict[str, Any]]) -> str | None:
    """Why a loaded run is incomplete (one line), or None when it ran to its end."""
    status = run.get("status")
    if status not in INCOMPLETE:
        return None
    planned = len(run.get("plan") or [])
    finished = sum(1 for c in cells if c.get("status") != PARENT_DIED)
    what = ("is still running" if status == "running"
            else f"is incomplete: its harness died (status {PARENT_DIED})")
    return f"this run {what} ({finished} of {planned} cells finished" + (
        f", {sum(1 for c in cells if c.get('status') == PARENT_DIED)} rebuilt from streamed "
        "unit records)" if status == PARENT_DIED else ")")

