"""Chunked submission for executors whose tasks are costly to ship (processes, Dask).

A process-pool task costs ~265 us to ship (chunksize 1) and a Dask task ~2.5 ms, so units
travel in chunks that keep per-unit timing: each unit is timed where it runs. The chunk
size adapts to the measured unit duration (aiming at ~50 ms of work per chunk, 1 to 100
units; ~0.5 ms of CPU per chunk measured on 2 cores: ~1 % at 50 ms) and shrinks as the
work runs out so the last chunks still balance across workers (guided scheduling).
``--chunksize`` fixes it instead.

The executor's ``submit`` still returns one future per unit: :class:`ChunkFeeder` queues
units and a feeder thread sends chunks while fewer than two per worker slot are in
flight. Chunks are sent from that thread, never from a completion callback (a process
pool runs callbacks on its own manager thread, which must not block on a submit).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from harness.outcomes import STATUS, STOPPED, not_run_tuple
from harness.scenario import Unit

TARGET_CHUNK_NS = 50_000_000
MAX_CHUNK = 100


class ChunkSizer:
    """Units per chunk: ``fixed`` (--chunksize), else adapted to the mean measured unit
    duration so a chunk holds ~TARGET_CHUNK_NS of work (1 to MAX_CHUNK units), and never
    more than the pending units shared over two chunks per worker slot."""

    def __init__(self, fixed: int | None, slots: int):
        self.fixed = fixed
        self.size = fixed or 1
        self._slots = max(1, slots)
        self._ns = self._units = 0

    def next_size(self, pending: int) -> int:
        """How many of ``pending`` units the next chunk takes."""
        if self.fixed:
            return min(self.fixed, pending)
        return max(1, min(self.size, pending, math.ceil(pending / (2 * self._slots))))

    def observe(self, records: list[tuple[Any, ...]]) -> None:
        """Account the durations of a finished chunk's records and resize."""
        for r in records:
            if r[STATUS] != "not-run":
                self._ns += r[6] - r[5]
                self._units += 1
        if self.fixed is None and self._units:
            mean = self._ns / self._units
            self.size = max(1, min(MAX_CHUNK, int(TARGET_CHUNK_NS / max(mean, 1))))


class ChunkFeeder:
    """Per-unit futures over chunked tasks; ``send(units)`` ships one chunk and returns a
    future (concurrent.futures or Dask) of its list of record tuples."""

    def __init__(self, send: Callable[[list[Unit]], Any], slots: int, fixed: int | None):
        self._send = send
        self.sizer = ChunkSizer(fixed, slots)
        self._max_in_flight = 2 * max(1, slots)
        self._pending: deque[tuple[Unit, Future]] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closed = False
        self.chunks_sent = 0
        self._thread = threading.Thread(target=self._feed, name="harness-feeder", daemon=True)
        self._thread.start()

    def submit(self, unit: Unit) -> Future:
        future: Future = Future()
        with self._cond:
            self._pending.append((unit, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        """Resolve every unit not yet shipped as not-run (``--on-error stop``)."""
        with self._cond:
            dropped = list(self._pending)
            self._pending.clear()
        for unit, future in dropped:
            future.set_result(not_run_tuple(unit, STOPPED))

    def close(self) -> None:
        """Stop the feeder thread once everything queued has been shipped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _feed(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._pending
                                            or self._in_flight >= self._max_in_flight):
                    self._cond.wait()
                if not self._pending:
                    return
                size = self.sizer.next_size(len(self._pending))
                batch = [self._pending.popleft() for _ in range(size)]
                self._in_flight += 1
                self.chunks_sent += 1
            self._ship(batch)

    def _ship(self, batch: list[tuple[Unit, Future]]) -> None:
        try:
            task = self._send([unit for unit, _ in batch])
        except Exception as exc:  # e.g. an unpicklable unit, a closed pool
            self._resolve(batch, None, exc)
            return
        task.add_done_callback(lambda done: self._finished(batch, done))

    def _finished(self, batch: list[tuple[Unit, Future]], task: Any) -> None:
        try:
            records, error = task.result(), None
        except BaseException as exc:  # a broken pool, a killed worker, a cancelled task
            records, error = None, exc
        self._resolve(batch, records, error)

    def _resolve(self, batch: list[tuple[Unit, Future]], records: list | None,
                 error: BaseException | None) -> None:
        with self._cond:
            self._in_flight -= 1
            if records is not None:
                self.sizer.observe(records)
            self._cond.notify()
        for index, (_, future) in enumerate(batch):
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(records[index])
