"""A flight recorder for a cell's unit records: memory the cell process writes and the
parent reads once it is gone, so a record written to it survives the writer's crash
without a system call on the writer's side.

Why not ship the record at once: after a slow unit (a 10 ms sleep) the vCPU of this kind
of machine has idled, and a pickle plus a pipe write that wakes the parent's reader costs
12-15 us there, against ~1 us hot (``tests/perf/slow_unit_gaps.py``), straight onto the
next unit's start. A store into mapped memory costs a few microseconds and wakes nobody;
the record still travels through the channel, a little later, with the next batch. If the
cell process dies first, the parent reads what the box holds and keeps every record it
never received (:func:`read_box`).

The box is an anonymous in-memory file (``memfd_create``; an unlinked temporary file
where there is none) that the parent creates and hands to the child as a file
descriptor: no path a scenario could delete, no disk writeback that would make a store
fault on the hot path, nothing left behind whatever dies.

Layout: length-prefixed pickles from offset 0; a zero length ends the log. A record is
written payload first (with a zero length after it), then its length, so a writer killed
mid-record leaves a log that ends before it. ``mmap`` from the standard library is the
whole mechanism: no package does less.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import tempfile
from typing import Any

_LENGTH = struct.Struct("<I")
_ZERO = bytes(_LENGTH.size)
BOX_BYTES = 1 << 20  # ~10,000 records: far more than one flush interval's slow units
_PRETOUCH = 1 << 16  # the pages a log that restarts every flush lives in


def create_box(size: int = BOX_BYTES) -> int:
    """A new, zero-filled box of ``size`` bytes; its file descriptor (inheritable by
    ``subprocess``'s ``pass_fds``; the caller closes it)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("harness-blackbox", 0)
    else:
        with tempfile.TemporaryFile() as fh:  # unlinked at once: nothing is left behind
            fd = os.dup(fh.fileno())
    os.ftruncate(fd, size)
    return fd


class BlackBox:
    """The writer's side, over a box's file descriptor. Owned by one thread: :meth:`log`
    is not thread-safe."""

    def __init__(self, fd: int):
        self.logged = 0  # records written since the box was opened
        self._offset = 0
        self._map = mmap.mmap(fd, 0)
        # Fault the first pages in now, not on the hot path.
        self._map[:_PRETOUCH] = bytes(min(_PRETOUCH, len(self._map)))

    def log(self, record: tuple[Any, ...], shipped: int) -> bool:
        """Write ``record``; ``shipped`` is how many logged records the channel has
        carried. False when it does not fit: the caller ships it itself."""
        if shipped >= self.logged:  # everything in the log has travelled: start over
            self._offset = 0
        payload = pickle.dumps(record, pickle.HIGHEST_PROTOCOL)
        start = self._offset
        end = start + _LENGTH.size + len(payload)
        box = self._map
        if end + _LENGTH.size > len(box):
            return False
        if start == 0:
            box[0:_LENGTH.size] = _ZERO  # a restarted log must not end in the old one
        box[start + _LENGTH.size:end + _LENGTH.size] = payload + _ZERO  # and where it ends
        _LENGTH.pack_into(box, start, len(payload))  # last: the record now counts
        self._offset = end
        self.logged += 1
        return True

    def close(self) -> None:
        self._map.close()


def read_box(fd: int) -> list[tuple[Any, ...]]:
    """The records a box holds, once its writer is gone; a torn record ends the log."""
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    records, offset = [], 0
    while offset + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if size == 0 or start + size > len(data):
            break
        try:
            records.append(pickle.loads(data[start:start + size]))
        except Exception:  # noqa: BLE001 - anything unreadable ends the log
            break
        offset = start + size
    return records
