"""The flight recorder for slow units' records: what it keeps, when it restarts, and what a
killed writer leaves behind."""

from __future__ import annotations

import os
import signal

import pytest

from harness.blackbox import BlackBox, create_box, read_box
from harness.driver import Recorder

MS = 1_000_000


def record(unit: str, service_ms: int = 10) -> tuple:
    return (unit, "", "1:1", 1, 0, 0, service_ms * MS, "ok", None, None, 0, 0, {})


@pytest.fixture
def fd():
    box_fd = create_box()
    yield box_fd
    os.close(box_fd)


def names(fd: int) -> list[str]:
    return [r[0] for r in read_box(fd)]


def test_logged_records_are_read_back_in_order(fd):
    assert read_box(fd) == []
    box = BlackBox(fd)
    for name in ("a", "b", "c"):
        assert box.log(record(name), shipped=0)
    assert names(fd) == ["a", "b", "c"]


def test_the_log_restarts_once_everything_in_it_was_shipped(fd):
    box = BlackBox(fd)
    for name in ("a-long-unit-name", "b-long-unit-name", "c"):
        box.log(record(name), shipped=0)
    box.log(record("d"), shipped=3)  # a, b and c travelled: d starts the log again
    assert names(fd) == ["d"]  # not d, then b's remains
    box.log(record("e"), shipped=3)  # d has not travelled yet: e goes after it
    assert names(fd) == ["d", "e"]


def test_a_full_box_refuses():
    fd = create_box(size=256)
    box = BlackBox(fd)
    accepted = [box.log(record(f"u{i}"), shipped=0) for i in range(10)]
    assert accepted[0] and not accepted[-1]
    assert len(read_box(fd)) == accepted.count(True)
    os.close(fd)


def test_a_torn_length_ends_the_log():
    fd = create_box(size=4096)
    box = BlackBox(fd)
    box.log(record("a"), shipped=0)
    box.log(record("b"), shipped=0)
    first = int.from_bytes(os.pread(fd, 4, 0), "little")
    os.pwrite(fd, (10_000).to_bytes(4, "little"), 4 + first)  # b's length points past the end
    assert names(fd) == ["a"]
    os.close(fd)


def test_the_owners_slow_record_waits_for_the_flusher_but_is_in_the_box(fd):
    shipped: list[list[tuple]] = []
    box = BlackBox(fd)
    recorder = Recorder(shipped.append, interval_ns=10_000 * MS, blackbox=box)
    recorder.add(record("slow"))
    assert shipped == [] and names(fd) == ["slow"]
    recorder.flush()
    assert [r[0] for batch in shipped for r in batch] == ["slow"]
    recorder.add(record("next"))  # the box starts over: "slow" has travelled
    assert names(fd) == ["next"]
    recorder.close()
    assert [r[0] for batch in shipped for r in batch] == ["slow", "next"]


def test_without_a_box_or_when_full_the_owner_ships_a_slow_record_at_once():
    shipped: list[list[tuple]] = []
    recorder = Recorder(shipped.append, interval_ns=10_000 * MS)
    recorder.add(record("slow"))
    assert [r[0] for batch in shipped for r in batch] == ["slow"]
    small = create_box(size=64)
    fast = Recorder(shipped.append, interval_ns=10_000 * MS, blackbox=BlackBox(small))
    fast.add(record("does-not-fit-in-64-bytes"))
    assert [r[0] for batch in shipped for r in batch] == ["slow", "does-not-fit-in-64-bytes"]
    recorder.close()
    fast.close()
    os.close(small)


def test_a_record_logged_before_a_kill_9_is_read_back(fd):
    """The writer is killed with SIGKILL right after its slow unit, before any flush."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the cell process: one slow unit, then it hangs until killed
        os.close(read)
        recorder = Recorder(lambda batch: None, interval_ns=10_000 * MS,
                            blackbox=BlackBox(fd))
        recorder.add(record("finished-before-the-kill"))
        os.write(write, b"1")
        while True:
            pass
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read)
    assert names(fd) == ["finished-before-the-kill"]

