"""The flight recorder for slow units' records: what it keeps, when it restarts, and what a
killed writer leaves behind."""

from __future__ import annotations

import os
import signal

from harness.blackbox import BlackBox, read_box
from harness.driver import Recorder

MS = 1_000_000


def record(unit: str, service_ms: int = 10) -> tuple:
    return (unit, "", "1:1", 1, 0, 0, service_ms * MS, "ok", None, None, 0, 0, {})


def test_logged_records_are_read_back_in_order(tmp_path):
    box = BlackBox(tmp_path / "box")
    for name in ("a", "b", "c"):
        assert box.log(record(name), shipped=0)
    assert [r[0] for r in read_box(tmp_path / "box")] == ["a", "b", "c"]


def test_the_log_restarts_once_everything_in_it_was_shipped(tmp_path):
    box = BlackBox(tmp_path / "box")
    for name in ("a-long-unit-name", "b-long-unit-name", "c"):
        box.log(record(name), shipped=0)
    box.log(record("d"), shipped=3)  # a, b and c travelled: d starts the log again
    assert [r[0] for r in read_box(tmp_path / "box")] == ["d"]  # not d, then b's remains
    box.log(record("e"), shipped=3)  # d has not travelled yet: e goes after it
    assert [r[0] for r in read_box(tmp_path / "box")] == ["d", "e"]


def test_a_full_box_refuses_and_a_missing_one_reads_empty(tmp_path):
    box = BlackBox(tmp_path / "box", size=256)
    accepted = [box.log(record(f"u{i}"), shipped=0) for i in range(10)]
    assert accepted[0] and not accepted[-1]
    assert len(read_box(tmp_path / "box")) == accepted.count(True)
    assert read_box(tmp_path / "never-created") == []


def test_a_torn_length_ends_the_log(tmp_path):
    box = BlackBox(tmp_path / "box", size=4096)
    box.log(record("a"), shipped=0)
    box.log(record("b"), shipped=0)
    data = bytearray((tmp_path / "box").read_bytes())
    first = int.from_bytes(data[0:4], "little")
    data[4 + first:8 + first] = (10_000).to_bytes(4, "little")  # b's length points past the end
    (tmp_path / "box").write_bytes(bytes(data))
    assert [r[0] for r in read_box(tmp_path / "box")] == ["a"]


def test_the_owners_slow_record_waits_for_the_flusher_but_is_in_the_box(tmp_path):
    shipped: list[list[tuple]] = []
    box = BlackBox(tmp_path / "box")
    recorder = Recorder(shipped.append, interval_ns=10_000 * MS, blackbox=box)
    recorder.add(record("slow"))
    assert shipped == [] and [r[0] for r in read_box(tmp_path / "box")] == ["slow"]
    recorder.flush()
    assert [r[0] for batch in shipped for r in batch] == ["slow"]
    recorder.add(record("next"))  # the box starts over: "slow" has travelled
    assert [r[0] for r in read_box(tmp_path / "box")] == ["next"]
    recorder.close()
    assert [r[0] for batch in shipped for r in batch] == ["slow", "next"]


def test_without_a_box_or_when_full_the_owner_ships_a_slow_record_at_once(tmp_path):
    shipped: list[list[tuple]] = []
    recorder = Recorder(shipped.append, interval_ns=10_000 * MS)
    recorder.add(record("slow"))
    assert [r[0] for batch in shipped for r in batch] == ["slow"]
    fast = Recorder(shipped.append, interval_ns=10_000 * MS,
                    blackbox=BlackBox(tmp_path / "box", size=64))
    fast.add(record("does-not-fit-in-64-bytes"))
    assert [r[0] for batch in shipped for r in batch] == ["slow", "does-not-fit-in-64-bytes"]
    recorder.close()
    fast.close()


def test_a_record_logged_before_a_kill_9_is_read_back(tmp_path):
    """The writer is killed with SIGKILL right after its slow unit, before any flush."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the cell process: one slow unit, then it hangs until killed
        os.close(read)
        recorder = Recorder(lambda batch: None, interval_ns=10_000 * MS,
                            blackbox=BlackBox(tmp_path / "box"))
        recorder.add(record("finished-before-the-kill"))
        os.write(write, b"1")
        while True:
            pass
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read)
    assert [r[0] for r in read_box(tmp_path / "box")] == ["finished-before-the-kill"]


def test_a_dead_runs_unshipped_records_are_salvaged_into_its_units_file(tmp_path):
    from harness.cell import BOX_FILE
    from harness.partial import salvage_boxes
    from harness.records import UnitsWriter, read_units

    scratch, cells = tmp_path / "work" / ".cells", tmp_path / "run" / "cells"
    (scratch / "c1").mkdir(parents=True)
    (cells / "c1").mkdir(parents=True)
    box = BlackBox(scratch / "c1" / BOX_FILE)
    for name in ("shipped", "lost-1", "lost-2"):
        box.log(record(name), shipped=0)
    writer = UnitsWriter(cells / "c1" / "units.jsonl")
    writer.write_batch([record("shipped")])  # the one the parent received before dying
    writer.close()
    assert salvage_boxes(scratch, cells) == 2
    units = read_units(cells / "c1" / "units.jsonl", "c1", "serial")
    assert sorted(u["unit"] for u in units) == ["lost-1", "lost-2", "shipped"]
