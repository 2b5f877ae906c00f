"""Cells that crash, hang or blow their memory budget are recorded; the run goes on."""

from __future__ import annotations

import psutil

from tests.runhelp import run_scenario


def _by_mode(run):
    return {c["mode"]: c for c in run.cells}


def test_crashing_cell_is_recorded_and_the_run_goes_on(tmp_path):
    params = {"units": 10, "cost_ms": 20, "crash_at": 4}
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads"], params)
    serial = _by_mode(run)["serial"]
    assert serial["status"] == "crashed"
    assert "exit code 70" in serial["message"]
    units = {u["unit"]: u for u in run.units[serial["cell_id"]]}
    assert len(units) == 10  # finished units kept, the rest recorded as not-run
    assert [units[f"u{i:06d}"]["status"] for i in range(4)] == ["ok"] * 4
    assert {units[f"u{i:06d}"]["error_class"] for i in range(4, 10)} == {"CellCrashed"}
    # The next cell ran in its own process (and crashed on its own).
    assert _by_mode(run)["threads"]["status"] == "crashed"


def test_timed_out_cell_keeps_what_it_finished(tmp_path):
    params = {"units": 40, "cost_ms": 100}
    run = run_scenario(tmp_path, "calibrate", ["serial", "threads"], params, timeout_s=1.5)
    serial, threads = run.cells
    assert serial["status"] == "timeout"
    assert serial["censored"] and serial["makespan_s"] >= 1.0
    statuses = [u["status"] for u in run.units[serial["cell_id"]]]
    assert 5 <= statuses.count("ok") < 40
    assert statuses.count("not-run") == 40 - statuses.count("ok")
    assert threads["status"] == "ok"  # 40 x 100 ms on 8 threads fits in 1.5 s


def test_memory_budget_kills_the_cell(tmp_path):
    params = {"units": 60, "cost_ms": 20, "alloc_mb": 20}  # would grow to ~1.2 GB
    run = run_scenario(tmp_path, "calibrate", ["serial"], params, max_memory_mb=300)
    (cell,) = run.cells
    assert cell["status"] == "memory-exceeded"
    assert 0 < cell["units_ok"] < 60
    worker_pid = int(run.units[cell["cell_id"]][0]["worker"].split(":")[0])
    assert not psutil.pid_exists(worker_pid)  # the whole process group was killed


def test_sampler_sees_pool_child_processes(tmp_path):
    params = {"units": 16, "cost_ms": 80, "kind": "cpu"}
    run = run_scenario(tmp_path, "calibrate", ["processes"], params, workers={"*": 2})
    (cell,) = run.cells
    samples = [s for s in run.samples[cell["cell_id"]] if s["series"] == "tree"]
    assert max(s["procs"] for s in samples) >= 3  # the cell process + 2 pool workers
    assert cell["sampler"]["ticks"] >= 5
    assert cell["sampler"]["cpu_fraction"] < 0.05
    cpu = samples[-1]["cpu_user"] + samples[-1]["cpu_sys"]
    assert cpu >= 16 * 0.08 * 0.8  # the workers' CPU is in the tree's total


def test_a_cell_whose_setup_fails_is_recorded_and_the_run_goes_on(tmp_path):
    scenario = tmp_path / "flaky_reset.py"
    scenario.write_text(
        "from harness.scenario import Unit\n"
        "def units(ctx):\n    return [Unit(f'u{i}') for i in range(3)]\n"
        "def reset(ctx):\n"
        "    if ctx.mode == 'serial':\n        raise ConnectionError('database is down')\n"
        "def work(unit, ctx):\n    return None\n")
    run = run_scenario(tmp_path / "out", str(scenario), ["serial", "threads"])
    serial, threads = run.cells
    assert serial["status"] == "crashed" and "database is down" in serial["message"]
    assert {u["status"] for u in run.units[serial["cell_id"]]} == {"not-run"}
    assert threads["status"] == "ok" and threads["units_ok"] == 3
