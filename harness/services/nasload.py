"""How the NFS-like volume behaves under load: a server that chokes, soft-mount timeouts and
"file busy". Pure Python (no FUSE), so the model is tested apart from the mount.

* **Service time grows with queue depth** along ``latency(d) = base + (choke - base) *
  (d / choke_depth) ** exponent``, where ``d`` counts every outstanding operation (served or
  queued). The default curve goes from 12 ms unloaded to about 1.8 s at 200 outstanding
  operations, the article's NFS server under 200 simultaneous writes.
* **Soft mount** (``soft,timeo=``): an operation not answered within ``timeout_ms`` (queued
  for a server slot, then served) fails with EIO when it never got a slot, ETIMEDOUT when its
  reply came too late. The operation is not performed then, as a soft-mounted client gives up.
  0 = a hard mount: wait for ever.
* **EBUSY** when more than ``max_handles`` handles hold one file at once (0 = no limit).
"""

from __future__ import annotations

import errno
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class LoadModel:
    """The volume's load behaviour; ``choke_ms=0`` keeps a constant ``latency_ms``."""

    latency_ms: float = 12.0
    slots: int = 8
    choke_ms: float = 1800.0
    choke_depth: int = 200
    exponent: float = 2.0
    timeout_ms: float = 0.0
    max_handles: int = 0

    def service_s(self, depth: int) -> float:
        """Service time of one operation with ``depth`` operations outstanding (itself too)."""
        base = self.latency_ms / 1000
        if self.choke_ms <= self.latency_ms or self.choke_depth <= 0:
            return base
        grow = (self.choke_ms / 1000 - base) * (max(0, depth - 1) / self.choke_depth) ** self.exponent
        return base + grow


class VolumeLoad:
    """The volume's shared state: outstanding operations, server slots, open handles."""

    def __init__(self, model: LoadModel) -> None:
        self.model = model
        self._slots = threading.BoundedSemaphore(max(1, model.slots))
        self._lock = threading.Lock()
        self._outstanding = 0
        self._handles: dict[str, int] = {}
        self.counts = {"eio": 0, "etimedout": 0, "ebusy": 0, "peak_depth": 0}

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @contextmanager
    def served(self) -> Iterator[None]:
        """Hold a server slot for one operation's modelled round trip, then run it in the
        ``with`` body; OSError(EIO/ETIMEDOUT) when a soft mount gives up first."""
        model, started = self.model, time.monotonic()
        timeout = model.timeout_ms / 1000 if model.timeout_ms > 0 else None
        with self._lock:
            self._outstanding += 1
            depth = self._outstanding
            self.counts["peak_depth"] = max(self.counts["peak_depth"], depth)
        try:
            if not self._slots.acquire(timeout=timeout):
                self._count("eio")
                raise OSError(errno.EIO, "NAS soft mount: no server slot within timeo")
            try:
                # The service time is set by the load the server sees when it takes the op.
                delay = model.service_s(max(depth, self._outstanding))
                if timeout is not None and time.monotonic() - started + delay > timeout:
                    time.sleep(max(0.0, timeout - (time.monotonic() - started)))
                    self._count("etimedout")
                    raise OSError(errno.ETIMEDOUT, "NAS soft mount: reply later than timeo")
                if delay > 0:
                    time.sleep(delay)  # the modelled network + server delay, on purpose
                yield
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._outstanding -= 1

    def hold(self, path: str) -> None:
        """A handle on ``path`` opens; OSError(EBUSY) past ``max_handles``."""
        with self._lock:
            held = self._handles.get(path, 0)
            if self.model.max_handles and held >= self.model.max_handles:
                self.counts["ebusy"] += 1
                raise OSError(errno.EBUSY, f"file busy: {held} handles hold {path}")
            self._handles[path] = held + 1

    def drop(self, path: str) -> None:
        """A handle on ``path`` was released."""
        with self._lock:
            held = self._handles.get(path, 0) - 1
            if held > 0:
                self._handles[path] = held
            else:
                self._handles.pop(path, None)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1
