"""counter_update against a real PostgreSQL: the naive read-modify-write loses increments
under concurrency and never serially; atomic and for_update never lose any."""

from __future__ import annotations

import pytest
from rich.console import Console

from harness.analysis.frames import cells_frame
from harness.analysis.table import comparison_table, display_frame
from harness.config import RunConfig
from harness.records import load_run
from harness.runner import Runner

pytestmark = pytest.mark.db

SMALL = {"units": 40, "increments": 4, "counters": 2}


def run(tmp_path, modes, workers=None, **params):
    config = RunConfig(scenario="counter_update", modes=modes, workers=workers or {}, repeat=1,
                       warmup=False, params={k: str(v) for k, v in {**SMALL, **params}.items()},
                       out=tmp_path, progress=False)
    return load_run(Runner(config, Console(quiet=True)).run())


def lost_by_mode(run_data):
    cells = cells_frame(run_data)
    return dict(zip(cells["mode"], cells["metric_lost_updates"]))


def test_naive_loses_increments_concurrently_but_not_serially(postgres, tmp_path):
    data = run(tmp_path, ["serial", "threads", "processes"],
               workers={"threads": 8, "processes": 4}, strategy="naive")
    lost = lost_by_mode(data)
    assert lost["serial"] == 0
    assert lost["threads"] > 0 and lost["processes"] > 0
    table = comparison_table(data).set_index("spec")
    assert table.loc["threads", "lost_updates"] > 0 and not table.loc["threads", "verify_ok"]
    assert table.loc["serial", "verify_ok"]
    # The DB columns are in the terminal table beside the verdict columns.
    shown = display_frame(comparison_table(data))
    for title in ("deadlocks", "rollbacks", "lock-wait peak", "connections peak", "lost updates"):
        assert title in shown.columns
    assert float(table.loc["threads", "connections_peak"]) >= 2


@pytest.mark.parametrize("strategy", ["atomic", "for_update"])
def test_locking_strategies_lose_nothing_in_any_mode(postgres, tmp_path, strategy):
    modes = ["serial", "threads", "asyncio", "processes", "grouped"]
    data = run(tmp_path, modes, workers={"threads": 8, "asyncio": 8, "processes": 2},
               strategy=strategy)
    assert lost_by_mode(data) == dict.fromkeys(modes, 0)
    assert all(c["units_ok"] == SMALL["units"] for c in data.cells)
    assert all(check["ok"] for c in data.cells for check in c["verify"])


def test_serializable_retries_serialization_failures(postgres, tmp_path):
    data = run(tmp_path, ["threads"], workers={"threads": 8}, strategy="serializable")
    units = data.units["000-threads-r1"]
    retried = sum(u["retries"].get("40001", 0) for u in units)
    assert retried > 0  # hot counters under SERIALIZABLE: conflicts, retried
    assert sum(u["attempts"] - 1 for u in units) == retried
    assert lost_by_mode(data) == {"threads": 0}
    assert all(u["status"] == "ok" for u in units)
