"""processes: a spawn ``ProcessPoolExecutor`` with ``--workers`` processes, chunked.

Workers load the scenario file once (initializer) and receive only units, in adaptive
chunks (:mod:`harness.executors.chunks`). Every worker is started in ``start()``, the
set-up phase: the pool would otherwise spawn them during the first submits, and a fixed
start-up cost would be reported as if it were a per-unit slowdown. Each worker asks
Linux to kill it when the cell process dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of
the cell leaves no orphan.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from harness.discovery import load_path
from harness.executors import register
from harness.executors.base import Executor
from harness.executors.chunks import ChunkFeeder
from harness.outcomes import run_chunk
from harness.scenario import Context, Unit

START_TIMEOUT_S = 120

_worker: dict[str, Any] = {}


def die_with_parent(signum: int | None = None) -> None:
    """Ask Linux to signal this process when its parent dies (no-op elsewhere)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signum or signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(scenario_path: str, ctx: Context, stop: Any, ready: Any) -> None:
    die_with_parent()
    _worker.update(scenario=load_path(scenario_path), ctx=ctx, stop=stop,
                   name=f"{os.getpid()}:0", ready=ready)


def _wait_ready() -> int:
    """Warm-up task: returns once every worker of the pool has started (a barrier)."""
    _worker["ready"].wait(START_TIMEOUT_S)
    return os.getpid()


def _run_chunk(units: list[Unit], t0_ns: int) -> list[tuple[Any, ...]]:
    w = _worker
    return run_chunk(w["scenario"].module.work, units, w["ctx"], t0_ns, w["name"], w["stop"],
                     stop_on_error=w["stop"] is not None)


@register
class ProcessesExecutor(Executor):
    name = "processes"
    description = "ProcessPoolExecutor (spawn) with --workers processes, adaptive chunks"
    simplicity = 4
    default_workers = os.cpu_count() or 2

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # safe with threads, same on every OS
        self._stop = context.Event() if self.setup.stop_on_error else None
        ready = context.Barrier(self.workers)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=_init_worker,
            initargs=(str(self.setup.scenario.path), self.setup.ctx, self._stop, ready))
        warmups = [self._pool.submit(_wait_ready) for _ in range(self.workers)]
        self.worker_pids = sorted({f.result(timeout=START_TIMEOUT_S) for f in warmups})
        self._feeder = ChunkFeeder(self._send, self.workers, self.setup.chunksize)

    def _send(self, units: list[Unit]) -> Future:
        return self._pool.submit(_run_chunk, units, self.t0_ns)

    def submit(self, unit: Unit) -> Future:
        return self._feeder.submit(unit)

    def request_stop(self) -> None:
        super().request_stop()
        if self._stop is not None:
            self._stop.set()  # chunks already in workers stop at their next unit
        self._feeder.stop()

    def shutdown(self) -> None:
        feeder = getattr(self, "_feeder", None)
        if feeder is not None:
            feeder.close()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def info(self) -> dict[str, Any]:
        return {"workers": self.workers, "chunks": self._feeder.chunks_sent,
                "final_chunksize": self._feeder.sizer.size, "start_method": "spawn",
                "worker_pids": self.worker_pids}
