"""deadlock_writes against a real PostgreSQL: random lock order deadlocks, counted by the
client (40P01 errors) and by the server (pg_stat_database.deadlocks) alike; sorted order
and per-worker partitions do not; balances are conserved in every mode."""

from __future__ import annotations

import pytest
from rich.console import Console

from harness.analysis.frames import cells_frame
from harness.config import RunConfig
from harness.records import load_run
from harness.runner import Runner

pytestmark = pytest.mark.db

DEADLOCK = "DeadlockDetected[40P01]"


def run(tmp_path, modes, workers, **params):
    texts = {k: str(v) for k, v in params.items()}
    return load_run(Runner(RunConfig("deadlock_writes", modes, workers, 1, False, texts, out=tmp_path,
                                     progress=False), Console(quiet=True)).run())


def deadlocks_per_cell(data):
    """cell -> (client-side 40P01 count: retried + given up, server-side delta)."""
    server = cells_frame(data).set_index("cell_id")["db_deadlocks"]
    client = {cell: sum(u["retries"].get("40P01", 0) + (u["error_class"] == DEADLOCK)
                        for u in units) for cell, units in data.units.items()}
    return {cell: (client[cell], int(server[cell])) for cell in client}


def assert_conserved(data):
    for cell in data.cells:
        checks = {c["name"]: c for c in cell["verify"]}
        assert checks["balance conserved"]["ok"], cell["cell_id"]
        assert checks["transfers applied exactly once"]["ok"], cell["cell_id"]


def test_random_order_deadlocks_counted_by_client_and_server_alike(postgres, tmp_path):
    data = run(tmp_path, ["serial", "threads", "asyncio", "processes", "grouped"],
               {"threads": 6, "asyncio": 6, "processes": 4, "grouped": 6},
               units=120, accounts=6, order="random")
    counts = deadlocks_per_cell(data)
    for cell, (client, server) in counts.items():
        assert client == server, (cell, client, server)
    assert counts["001-threads-r1"][0] > 0
    assert counts["000-serial-r1"] == (0, 0)
    assert_conserved(data)
    # A deadlock costs the victim its transaction: the server saw the rollbacks.
    cells = cells_frame(data).set_index("cell_id")
    assert cells.loc["001-threads-r1", "db_rollbacks"] >= counts["001-threads-r1"][1]


@pytest.mark.parametrize("params", [{"order": "sorted"},
                                    {"order": "random", "partition": "by_worker"}])
def test_sorted_order_and_partitions_never_deadlock(postgres, tmp_path, params):
    data = run(tmp_path, ["threads", "asyncio"], {"*": 6}, units=120, accounts=12, **params)
    assert set(deadlocks_per_cell(data).values()) == {(0, 0)}
    assert all(c["units_ok"] == 120 for c in data.cells)
    assert all(check["ok"] for c in data.cells for check in c["verify"])
