"""A flight recorder for a cell's unit records: a file both processes map, so a record
written to it survives the writer's crash without a system call on the writer's side.

Why not ship the record at once: after a slow unit (a 10 ms sleep) the vCPU of this kind
of machine has idled, and a pickle plus a pipe write that wakes the parent's reader costs
12-15 us there, against ~1 us hot (``tests/perf/slow_unit_gaps.py``), straight onto the
next unit's start. Writing into mapped memory costs a few microseconds and wakes nobody;
the record still travels through the channel, a little later, with the next batch. If the
cell process dies first, the parent reads what the box holds and keeps every record it
never received (:func:`read_box`).

Layout: length-prefixed pickles from offset 0; a zero length ends the log. A record is
written payload first (with a zero length after it), then its length, so a
writer killed mid-record leaves a log that ends before it. ``mmap`` from the standard
library is the whole mechanism: no package does less.
"""

from __future__ import annotations

import mmap
import pickle
import struct
from pathlib import Path
from typing import Any

_LENGTH = struct.Struct("<I")
_ZERO = bytes(_LENGTH.size)
BOX_BYTES = 1 << 20  # ~10,000 records: far more than one flush interval's slow units


class BlackBox:
    """The writer's side. Owned by one thread: :meth:`log` is not thread-safe."""

    def __init__(self, path: Path, size: int = BOX_BYTES):
        self.path = Path(path)
        self.logged = 0  # records written since the box was created
        self._offset = 0
        with open(self.path, "w+b") as fh:
            # Zero-filled by write, not a sparse truncate: no page is allocated on the
            # hot path (a first touch of a file page costs a fault of a few microseconds).
            fh.write(bytes(size))
            fh.flush()
            self._map = mmap.mmap(fh.fileno(), size)

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


def read_box(path: Path) -> list[tuple[Any, ...]]:
    """The records a box holds (none if it was never created); a torn record ends it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
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
