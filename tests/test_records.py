"""Records round-trip, refuse newer schemas, never overwrite a results folder."""

from __future__ import annotations

import json

import pytest

from harness.analysis.table import comparison_table
from harness.records import SCHEMA_VERSION, SchemaError, create_run_dir, load_run
from tests.runhelp import run_scenario


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return run_scenario(out, "calibrate", ["serial", "threads"],
                        {"units": 12, "cost_ms": 5, "fail_every": 6}, repeat=2, warmup=True)


def test_run_round_trips(small_run):
    run = small_run
    assert run.run["schema_version"] == SCHEMA_VERSION
    assert run.run["status"] == "finished"
    assert run.run["scenario"]["name"] == "calibrate"
    assert run.run["scenario"]["params"]["units"] == 12
    assert len(run.run["scenario"]["version"]) >= 12
    meta = run.run["metadata"]
    for key in ("host", "cpu_model", "cores_logical", "memory_bytes", "os", "python", "packages"):
        assert meta[key], key
    assert [c["cell_id"] for c in run.cells] == [p["cell_id"] for p in run.run["plan"]]
    assert run.cells[0]["warmup"] and not any(c["warmup"] for c in run.cells[1:])
    for cell in run.cells:
        units = run.units[cell["cell_id"]]
        assert len(units) == 12
        assert {u["status"] for u in units} == {"ok", "error"}
        assert all(u["end_ns"] >= u["start_ns"] >= 0 for u in units)
        assert cell["started_at_ns"] > 1.7e18  # a wall-clock timestamp (ns since epoch)


def test_plan_interleaves_modes(small_run):
    counted = [c["mode"] for c in small_run.cells if not c["warmup"]]
    assert counted == ["serial", "threads", "threads", "serial"]


def test_table_counts_only_measured_cells(small_run):
    table = comparison_table(small_run).set_index("mode")
    assert table.loc["serial", "cells"] == 2
    assert table.loc["threads[8]", "error_count"] == 4  # 2 failures per cell x 2 cells
    assert "RuntimeError x4" in table.loc["threads[8]", "errors"]
    assert table.loc["serial", "speedup"] == pytest.approx(1.0)
    assert table.loc["threads[8]", "speedup"] > 1.5


def test_newer_schema_is_refused(small_run, tmp_path):
    folder = tmp_path / "future"
    folder.mkdir()
    run = dict(small_run.run, schema_version=SCHEMA_VERSION + 1)
    (folder / "run.json").write_text(json.dumps(run))
    with pytest.raises(SchemaError, match="newer than this harness"):
        load_run(folder)


def test_torn_last_line_is_skipped(small_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_run.path, copy)
    cell_id = small_run.cells[1]["cell_id"]
    with open(copy / "cells" / cell_id / "units.jsonl", "a") as fh:
        fh.write('{"unit": "torn", "sta')
    assert len(load_run(copy).units[cell_id]) == 12


def test_results_folders_are_never_reused(tmp_path):
    first = create_run_dir(tmp_path, "x")[1]
    second = create_run_dir(tmp_path, "x")[1]
    assert first != second and first.exists() and second.exists()
