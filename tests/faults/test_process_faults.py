"""Faults of the run's own processes: kill -9 of a pool worker, of the cell child and of the
harness parent, and Ctrl-C. Each test injects its fault into a real run (see faultrun)."""

from __future__ import annotations

import math
import signal
import subprocess
import sys

import pytest

from harness.analysis.table import comparison_table
from harness.records import load_run
from tests.faults.faultrun import ROOT, FaultRun, descendants, lost, record, wait_for

PARAMS = {"units": 80, "cost_ms": 40}


def _cells(run: FaultRun):
    data = load_run(run.run_dir)
    return data, {c["index"]: c for c in data.cells}


def test_kill_9_of_a_pool_worker(tmp_path):
    run = FaultRun(tmp_path, "processes,serial", PARAMS, "--workers", "2")
    before = run.wait_running(0)
    cell = wait_for(lambda: run.processes("harness.cell"), 30, "the cell process")[0]
    workers = [p for p in cell.children() if "resource_tracker" not in " ".join(p.cmdline())]
    workers[0].kill()
    rc = run.wait()
    data, cells = _cells(run)
    left = run.leftovers()
    record("kill -9 pool worker", f"exit {rc}; cell {cells[0]['status']}",
           lost(before, data.units[cells[0]["cell_id"]]), left)
    assert rc == 0, run.output  # the serial cell passed
    assert cells[0]["status"] == "crashed" and cells[0]["censored"]
    assert "executor broken" in cells[0]["message"]
    assert cells[1]["status"] == "ok"
    assert lost(before, data.units[cells[0]["cell_id"]]) == 0
    assert len(data.units[cells[0]["cell_id"]]) == PARAMS["units"]  # the rest: not-run
    assert not left


def test_kill_9_of_the_cell_child(tmp_path):
    run = FaultRun(tmp_path, "processes,serial", PARAMS, "--workers", "2")
    before = run.wait_running(0)
    cell = wait_for(lambda: run.processes("harness.cell"), 30, "the cell process")[0]
    pool = wait_for(lambda: cell.children(), 10, "the pool")  # workers + resource tracker
    assert any("resource_tracker" in " ".join(p.cmdline()) for p in pool)
    cell.kill()
    rc = run.wait()
    data, cells = _cells(run)
    left = run.leftovers()
    record("kill -9 cell child", f"exit {rc}; cell {cells[0]['status']}",
           lost(before, data.units[cells[0]["cell_id"]]), left)
    assert rc == 0, run.output
    assert cells[0]["status"] == "crashed" and cells[0]["censored"]
    assert "signal 9" in cells[0]["message"]
    assert lost(before, data.units[cells[0]["cell_id"]]) == 0
    assert not left


def test_kill_9_of_the_harness_parent(tmp_path):
    run = FaultRun(tmp_path, "processes", {**PARAMS, "use": "postgres"}, "--workers", "2")
    before = run.wait_running(0)
    wait_for(lambda: run.processes("harness.cell"), 30, "the cell process")
    run.proc.kill()
    rc = run.wait()
    left = run.leftovers(schemas=True)
    report = subprocess.run([sys.executable, "-m", "harness", "report", str(run.run_dir)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    data, cells = _cells(run)
    record("kill -9 harness parent", f"exit {rc}; report exit {report.returncode}; cell "
           f"{cells[0]['status']}", lost(before, data.units[cells[0]["cell_id"]]), left)
    assert rc == -signal.SIGKILL
    assert data.run["status"] == "parent-died"
    assert cells[0]["status"] == "parent-died" and cells[0]["censored"]
    assert lost(before, data.units[cells[0]["cell_id"]]) == 0
    assert report.returncode == 4, report.stdout + report.stderr
    assert "incomplete" in report.stdout and "parent-died" in report.stdout.replace("\n", " ")
    assert not left


def test_sigint_of_the_harness(tmp_path):
    run = FaultRun(tmp_path, "serial,threads", PARAMS)
    wait_for(lambda: run.cell_dir(1) and run.records(1), 90, "the second cell to run")
    before = run.records(0)
    run.proc.send_signal(signal.SIGINT)
    rc = run.wait()
    data, cells = _cells(run)
    left = run.leftovers()
    record("SIGINT", f"exit {rc}; cell {cells[1]['status']}",
           lost(before, data.units[cells[0]["cell_id"]]), left)
    assert rc == 130, run.output
    assert data.run["status"] == "interrupted"
    assert cells[0]["status"] == "ok"
    assert cells[1]["status"] == "interrupted" and cells[1]["censored"]
    assert lost(before, data.units[cells[0]["cell_id"]]) == 0
    table = comparison_table(data).set_index("spec")
    assert math.isnan(table.loc["threads", "speedup"])  # no ratio from a cut-short cell
    assert math.isnan(table.loc["threads", "efficiency"])
    assert not left


def test_kill_9_of_the_cell_child_in_dask_mode(tmp_path):
    pytest.importorskip("distributed")
    run = FaultRun(tmp_path, "dask,serial", {"units": 300, "cost_ms": 40}, "--workers", "2")
    before = run.wait_running(0)
    cell = wait_for(lambda: run.processes("harness.cell"), 30, "the cell process")[0]
    wait_for(lambda: len(descendants(cell)) >= 3, 30, "the tracker and the workers")
    before = run.records(0)
    cell.kill()
    rc = run.wait()
    data, cells = _cells(run)
    left = run.leftovers()
    record("kill -9 cell child (dask)", f"exit {rc}; cell {cells[0]['status']}",
           lost(before, data.units[cells[0]["cell_id"]]), left)
    assert rc == 0, run.output
    assert cells[0]["status"] == "crashed" and cells[0]["censored"]
    assert lost(before, data.units[cells[0]["cell_id"]]) == 0
    assert not left  # nannies and their workers died with the cell
