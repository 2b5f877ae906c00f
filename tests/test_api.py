"""The Python API: what a notebook gets equals what `harness report` shows."""

from __future__ import annotations

import json

import harness
from harness.cli import main


def test_run_returns_the_frames_and_verdict_that_report_shows(tmp_path):
    result = harness.run("calibrate", modes=["serial", "threads"],
                         params={"units": 8, "cost_ms": 2}, repeat=2, warmup=False,
                         out=tmp_path)
    assert set(result.table["mode"]) == {"serial", "threads[8]"}
    assert len(result.units) == 2 * 2 * 8 and {"latency_ms", "service_ms"} <= set(result.units)
    assert len(result.cells) == 4 and not result.samples.empty
    assert main(["report", str(result.run_dir), "--format", "json"]) == 0
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["verdict"]["recommended"] == result.verdict.recommended
    assert report["verdict"]["outcome"] == result.verdict.outcome
    shown = {row["mode"]: row for row in report["table"]}
    for row in result.table.to_dict("records"):
        for key in ("wall_s", "p99_ms", "service_p99_ms", "units_total", "simplicity"):
            assert shown[row["mode"]][key] == row[key], (row["mode"], key)


def test_load_reads_a_folder_with_its_recorded_budgets(tmp_path):
    first = harness.run("calibrate", modes=["serial"], params={"units": 4, "cost_ms": 1},
                        repeat=1, warmup=False, out=tmp_path, budgets={"min_gain": 0.5})
    again = harness.load(first.run_dir)
    assert again.verdict.budgets.min_gain == 0.5
    assert again.table.equals(first.table)
