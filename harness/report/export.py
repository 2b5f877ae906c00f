"""Report content as plain data, its JSON and CSV exports, and one writer per format.

:func:`report_data` gathers what every report says (what was run, on which machine, the
table, the verdict with reasons, verify results, cells, environment) into JSON-ready data;
the Markdown and HTML renderers format that same data, so the formats never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from harness.analysis.table import COLUMNS, display_frame, table_notes, terminal_columns
from harness.analysis.verdict import Analysis
from harness.metadata import fingerprint
from harness.records import SCHEMA_VERSION


# How to read the table; printed under it by every renderer.
TABLE_NOTES = (
    "run CI: distribution-free interval of the median at the level in 'CI level' (95% from "
    "6 repeats; with fewer it is [min, max] and its real, lower coverage is shown); '>=' "
    "marks a median that a cut-short cell makes a lower bound.",
    "Outlier cells are flagged from 6 repeats on (modified z-score > 5), never dropped; "
    "cells that did not finish count as censored values, never as missing.",
)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf to None, numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _verify_rows(analysis: Analysis) -> list[dict[str, Any]]:
    """Verify checks per mode and check name, condensed over the counted repeats."""
    labels = {c["cell_id"]: c["label"] for c in analysis.run.cells if not c.get("warmup")}
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in analysis.run.cells:
        if cell["cell_id"] not in labels:
            continue
        for check in cell.get("verify") or []:
            grouped.setdefault((cell["label"], check["name"]), []).append(
                {**check, "cell": cell["cell_id"]})
    rows = []
    for (label, name), checks in grouped.items():
        failed = [c for c in checks if not c["ok"]]
        shown = failed[0] if failed else checks[0]
        rows.append({"mode": label, "check": name, "ok": not failed,
                     "cells": len(checks), "failed_cells": [c["cell"] for c in failed],
                     "expected": shown.get("expected"), "actual": shown.get("actual"),
                     "detail": shown.get("detail", "")})
    return rows


def report_data(analysis: Analysis) -> dict[str, Any]:
    """Everything a report says, as JSON-ready data."""
    run = analysis.run.run
    meta = run.get("metadata") or {}
    config = run.get("config") or {}
    display = display_frame(analysis.table) if not analysis.table.empty else pd.DataFrame()
    decisive = [c for c in terminal_columns(analysis.table) if c in display.columns]
    if decisive:
        decisive.insert(2, COLUMNS["wall_ci_coverage"])
    more = ["mode"] + [c for c in display.columns if c not in decisive
                       and c not in (COLUMNS["wall_s"], COLUMNS["wall_ci"])]
    return _clean({
        "report_of": str(analysis.run.path),
        "schema_version": SCHEMA_VERSION,
        "stored_schema_version": run.get("stored_schema_version"),
        "run": {k: run.get(k) for k in ("run_id", "status", "started_at", "finished_at")},
        "events": list(run.get("events") or []),  # service restarts and outages
        "scenario": run.get("scenario") or {},
        "config": config,
        "modes": list(analysis.table["mode"]) if not analysis.table.empty else [],
        "machine": {k: meta.get(k) for k in ("host", "cpu_model", "cores_logical",
                                             "cores_physical", "cpu_affinity", "memory_bytes",
                                             "os", "python", "python_implementation")},
        "environment": {"git": meta.get("git"), "packages": meta.get("packages"),
                        "load_average": meta.get("load_average"),
                        "services": run.get("services")},
        "fingerprint": fingerprint(run, analysis.run.cells),
        "verdict": analysis.verdict.to_dict(),
        "table": analysis.table.to_dict("records"),
        "display": {"decisive": display[decisive].to_dict("split") if decisive else None,
                    "more": display[more].to_dict("split") if len(more) > 1 else None},
        "table_notes": table_notes(analysis.table) + list(TABLE_NOTES),
        "verify": _verify_rows(analysis),
        "cells": [{k: c.get(k) for k in ("cell_id", "label", "repeat", "warmup", "status",
                                         "setup_s", "makespan_s", "teardown_s", "censored",
                                         "message")}
                  for c in analysis.run.cells],
    })


def render_json(analysis: Analysis) -> str:
    return json.dumps(report_data(analysis), indent=2) + "\n"


def render_csv(analysis: Analysis) -> str:
    """The comparison table (raw numbers) with each mode's verdict status and reasons."""
    table = analysis.table.copy()
    verdict = analysis.verdict
    table["verdict"] = table["mode"].map(lambda m: verdict.status.get(m, ""))
    table["verdict_reasons"] = table["mode"].map(lambda m: "; ".join(verdict.reasons.get(m, [])))
    return table.to_csv(index=False)


def _render_md(analysis: Analysis) -> str:
    from harness.report.markdown_report import render_markdown

    return render_markdown(report_data(analysis))


def _render_html(analysis: Analysis) -> str:
    from harness.report.html import render_html

    return render_html(report_data(analysis), analysis)


RENDERERS: dict[str, Callable[[Analysis], str]] = {
    "md": _render_md, "html": _render_html, "json": render_json, "csv": render_csv}


def write_report(analysis: Analysis, fmt: str, path: Path | None = None) -> Path:
    """Render ``fmt`` and write it (default: ``report.<fmt>`` in the run folder)."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(RENDERERS)})")
    path = Path(path) if path is not None else Path(analysis.run.path) / f"report.{fmt}"
    path.write_text(RENDERERS[fmt](analysis), encoding="utf-8")
    return path
