"""A one-way message pipe from a cell's child process to the observing parent.

Messages are pickled tuples behind a 4-byte length. Writes are serialized by a lock so
threads in the child can send; the parent reads on its own thread.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
from typing import Any, Iterator

_HEADER = struct.Struct("!I")


class ChannelWriter:
    """The child's end: ``send(("kind", ...))``."""

    def __init__(self, fd: int):
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = _HEADER.pack(len(payload)) + payload
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        os.close(self._fd)


def read_messages(fd: int) -> Iterator[tuple[Any, ...]]:
    """The parent's end: yields messages until the child closes the pipe or dies."""
    with os.fdopen(fd, "rb", buffering=1 << 16) as stream:
        while True:
            header = stream.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            (size,) = _HEADER.unpack(header)
            payload = stream.read(size)
            if len(payload) < size:
                return  # torn message from a killed child: everything before it counts
            yield pickle.loads(payload)
