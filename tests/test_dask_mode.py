"""The dask executor beyond the registry-wide tests: pure=False, cleanup, --on-error stop,
an existing scheduler (on 127.0.0.1 only) and the cluster's own usage."""

from __future__ import annotations

import logging
from pathlib import Path

import psutil
import pytest

from harness.discovery import load_path
from harness.driver import Driver, Recorder
from harness.executors import ExecutorSetup, get_executor
from harness.policies.fifo import Fifo
from harness.scenario import Context, Unit
from tests.runhelp import run_scenario

distributed = pytest.importorskip("distributed")

# Every call appends one line: the file counts executions, whatever Dask decided to reuse.
COUNTING_SCENARIO = '''
import os
from harness.scenario import Unit

def units(ctx):
    return []

def work(unit, ctx):
    fd = os.open(os.path.join(ctx.params["log"], "calls"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, unit.id.encode() + b"\\n")
    os.close(fd)
'''


def test_identical_units_all_execute(tmp_path):
    """The same unit submitted six times runs six times: tasks go out with pure=False, so
    Dask never computes identical calls once (which would fake a speedup)."""
    path = tmp_path / "counting.py"
    path.write_text(COUNTING_SCENARIO, encoding="utf-8")
    ctx = Context(scenario="counting", params={"log": str(tmp_path)}, work_dir=tmp_path)
    unit = Unit("same", "all", None)
    batches: list[list[tuple]] = []
    executor = get_executor("dask")(ExecutorSetup(load_path(path), ctx, 1, chunksize=1))
    driver = Driver(executor, Fifo(1), Recorder(batches.append))
    result = driver.run([unit] * 6)
    records = [r for batch in batches for r in batch]
    assert [r[7] for r in records] == ["ok"] * 6
    assert (tmp_path / "calls").read_text().split() == ["same"] * 6
    assert result.info["chunks"] == 6 and result.broken is None
    # The fingerprint's cluster size; a LocalCluster's workers are sampled from outside
    # (they are in the cell's tree), so no sampler runs inside them.
    assert result.info["cluster_workers"] == 1 and result.info["hosts"] == 1
    assert result.info["cluster_usage"] == {}


def test_cell_runs_every_unit_once_and_leaves_no_process(tmp_path):
    run = run_scenario(tmp_path, "calibrate", ["dask"], {"units": 24, "cost_ms": 5},
                       workers={"dask": 2})
    (cell,) = run.cells
    assert cell["status"] == "ok", cell["message"]
    assert all(check["ok"] for check in cell["verify"]), cell["verify"]  # receipts: once each
    units = run.units[cell["cell_id"]]
    assert sorted(u["unit"] for u in units) == [f"u{i:06d}" for i in range(24)]
    info = cell["info"]
    assert len(info["worker_pids"]) == 2
    assert {u["worker"].split(":")[0] for u in units} <= {str(p) for p in info["worker_pids"]}
    # The cluster's start and close are phases of their own, outside the makespan.
    assert cell["setup_s"] > 0 and cell["teardown_s"] > 0
    assert cell["makespan_s"] >= max(u["end_ns"] for u in units) / 1e9
    assert not [pid for pid in info["worker_pids"] if psutil.pid_exists(pid)]


def test_on_error_stop_records_the_rest_as_not_run(tmp_path):
    params = {"units": 30, "cost_ms": 5, "fail_every": 4}
    run = run_scenario(tmp_path, "calibrate", ["dask"], params, workers={"dask": 2},
                       on_error="stop")
    (cell,) = run.cells
    statuses = [u["status"] for u in run.units[cell["cell_id"]]]
    assert len(statuses) == 30  # every unit has a record
    assert statuses.count("error") >= 1
    assert statuses.count("not-run") >= 10


@pytest.fixture
def scheduler():
    """A user's cluster: one worker process, on 127.0.0.1, not started by the harness."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster


def test_existing_scheduler_is_used_and_left_running(tmp_path, scheduler):
    """Its worker has two threads: tasks run side by side in one process."""
    address = scheduler.scheduler_address
    run = run_scenario(tmp_path, "calibrate", ["dask"], {"units": 12, "cost_ms": 5},
                       dask_address=address)
    (cell,) = run.cells
    assert cell["status"] == "ok", cell["message"]
    assert cell["label"] == f"dask({address})"
    assert cell["info"]["cluster"] == address and cell["info"]["threads"] == 2
    # The workers are outside the cell's tree: their CPU is measured on the cluster.
    assert cell["info"]["cluster_usage"]["cpu_s"] > 0
    assert all(check["ok"] for check in cell["verify"]), cell["verify"]
    with distributed.Client(address) as client:  # the user's cluster is still up
        assert len(client.scheduler_info()["workers"]) == 1


def test_unavailable_without_distributed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real(name, *a))
    assert get_executor("dask").available() == (False, "pip install 'dask[distributed]'")


def test_scenario_is_loaded_once_per_worker_process(tmp_path):
    """Threads of one worker loading a scenario at once all get the one, complete module
    (load_path registers a module before executing it)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.executors import dask_executor

    path = tmp_path / "calibrate_copy.py"
    source = Path(__file__).resolve().parent.parent / "scenarios" / "calibrate.py"
    path.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    with ThreadPoolExecutor(8) as pool:
        loaded = list(pool.map(lambda _: dask_executor._scenario(str(path)), range(8)))
    assert all(s is loaded[0] for s in loaded) and callable(loaded[0].module.work)


def test_chunks_adapt_to_unit_cost_and_shrink_as_work_runs_out():
    """The chunk sizing the dask mode shares with the processes mode: ~50 ms of work per
    chunk, then smaller chunks at the end so the last ones still spread over the workers."""
    from harness.executors.chunks import ChunkSizer

    sizer = ChunkSizer(None, slots=2)
    assert sizer.next_size(1000) == 1  # nothing measured yet
    sizer.observe([("u", "g", "w", 1, 0, 0, 1_000_000, "ok", None, None, 0, 0, {})] * 10)
    assert sizer.next_size(1000) == 50  # 1 ms units
    assert sizer.next_size(100) == 25 and sizer.next_size(3) == 1
    assert ChunkSizer(7, slots=2).next_size(100) == 7


def _workload_connections_and_contexts() -> tuple[int, int]:
    from harness.executors import dask_executor
    from harness.workloads import db

    return db.open_connections(), len(dask_executor._contexts)


def test_a_users_workers_keep_no_connection_or_context_of_a_finished_cell(tmp_path, scheduler):
    """A user's cluster outlives the cell: the cell's database connections on its workers
    are closed at tear-down (close_worker), and its context forgotten."""
    run = run_scenario(tmp_path, "counter_update", ["dask"],
                       {"units": 20, "increments": 2, "strategy": "atomic"},
                       dask_address=scheduler.scheduler_address)
    (cell,) = run.cells
    assert cell["status"] == "ok", cell["message"]
    with distributed.Client(scheduler.scheduler_address) as client:
        left = client.run(_workload_connections_and_contexts)
    assert list(left.values()) == [(0, 0)], left


EDITED_SCENARIO = '''"""A scenario a user edits between two runs on the same cluster."""
from harness.scenario import Context, Unit, UnitResult

NAME = "edited"
DESCRIPTION = "rows per unit: {rows}"


def units(ctx: Context) -> list[Unit]:
    return [Unit(id=f"u{{i}}") for i in range(4)]


def work(unit: Unit, ctx: Context) -> UnitResult:
    return UnitResult(rows={rows})
'''


def test_a_users_workers_run_the_scenario_as_it_is_now_not_as_first_loaded(tmp_path, scheduler):
    """The workers outlive the run: a file edited since they loaded it is loaded again, so
    the second run's units run the second version."""
    path = tmp_path / "edited.py"
    rows = []
    for version in (1, 2):
        path.write_text(EDITED_SCENARIO.format(rows=version))
        run = run_scenario(tmp_path / f"run{version}", str(path), ["dask"],
                           dask_address=scheduler.scheduler_address)
        (cell,) = run.cells
        assert cell["status"] == "ok", cell["message"]
        rows.append({u["rows"] for u in run.units[cell["cell_id"]]})
    assert rows == [{1}, {2}]
