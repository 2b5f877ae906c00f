"""event_ordering against a real PostgreSQL: parallel consumers with no strategy apply
effects before causes; per-key partitions, the sequence buffer and the sequencer never do,
in every executor."""

from __future__ import annotations

import pytest

from harness.analysis.frames import cells_frame
from harness.executors import all_executors
from tests.runhelp import run_scenario

SMALL = {"entities": 6, "updates": 6, "apply_ms": 8.0}


def metrics(run):
    cells = cells_frame(run)
    return {mode: (v, m) for mode, v, m in zip(cells["mode"], cells["metric_ordering_violations"],
                                                cells["metric_final_state_mismatches"])}


def test_the_log_keeps_each_entity_in_order_and_the_counter_is_exact():
    from harness.discovery import load

    mod = load("event_ordering").module
    events = mod.log({"entities": 5, "updates": 3, "delete_share": 0.5, "apply_ms": 1.0,
                      "seed": 3})
    by_key: dict[str, list[int]] = {}
    for _, key, seq, *_ in events:
        by_key.setdefault(key, []).append(seq)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_key.values())
    assert mod.violations([("a", 1), ("a", 3), ("a", 2), ("b", 1), ("a", 4)]) == 1
    assert mod.serial_state([(0, "a", 1, "create", 5, 0), (1, "a", 2, "update", 7, 0),
                             (2, "b", 1, "create", 1, 0), (3, "b", 2, "delete", 0, 0)]) \
        == {"a": (7, 2)}


@pytest.mark.db
@pytest.mark.parametrize("executor", list(all_executors()))
def test_per_key_partitions_keep_order_in_every_executor(postgres, tmp_path, executor):
    ok, why = all_executors()[executor].available()
    if not ok:
        pytest.skip(f"{executor} unavailable: {why}")
    run = run_scenario(tmp_path, "event_ordering", [executor],
                       {**SMALL, "strategy": "per_key", "partitions": 3}, workers={"*": 3})
    (cell,) = run.cells
    assert cell["status"] == "ok", cell["message"]
    assert cell["units_ok"] == 3  # one unit per partition
    assert all(c["ok"] for c in cell["verify"]), cell["verify"]
    assert metrics(run)[executor] == (0, 0)


@pytest.mark.db
def test_no_strategy_shows_violations_under_threads_and_the_strategies_none(postgres,
                                                                            tmp_path):
    naive = run_scenario(tmp_path / "none", "event_ordering", ["serial", "threads"],
                         {**SMALL, "strategy": "none"}, workers={"threads": 8})
    got = metrics(naive)
    assert got["serial"] == (0, 0)  # the log is in order: one consumer keeps it
    assert got["threads"][0] > 0
    threads = next(c for c in naive.cells if c["mode"] == "threads")
    failed = {c["name"] for c in threads["verify"] if not c["ok"]}
    assert "events applied in entity order" in failed
    assert "every event applied exactly once" not in failed
    for strategy in ("sequence_buffer", "sequencer"):
        run = run_scenario(tmp_path / strategy, "event_ordering", ["threads"],
                           {**SMALL, "strategy": strategy}, workers={"threads": 8})
        (cell,) = run.cells
        assert all(c["ok"] for c in cell["verify"]), (strategy, cell["verify"])
        assert metrics(run)["threads"] == (0, 0)
