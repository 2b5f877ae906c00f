"""processes: a ProcessPoolExecutor with ``--workers`` processes and adaptive chunking.

Workers load the scenario file once (initializer) and receive only units, in chunks.
Chunks keep per-unit timing: each unit is timed inside the worker. The chunk size adapts
to the measured unit duration (aiming at ~50 ms of work per chunk, 1 to 100 units), so
tiny units do not drown in IPC overhead (~0.5 ms of CPU per chunk measured on 2 cores:
~1% at 50 ms, ~3% at 20 ms), and shrinks as the work runs out so the last chunks still
balance across workers (guided scheduling). ``--chunksize`` fixes it instead.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from harness.discovery import load_path
from harness.modes import register
from harness.modes.base import Execution, Mode, error_tuple, not_run_tuple, run_chunk
from harness.scenario import Context, Unit

TARGET_CHUNK_NS = 50_000_000
MAX_CHUNK = 100

_worker: dict[str, Any] = {}


def _init_worker(scenario_path: str, ctx: Context, t0_ns: int, stop: Any) -> None:
    _worker.update(scenario=load_path(scenario_path), ctx=ctx, t0=t0_ns, stop=stop,
                   name=f"{os.getpid()}:0")


def _run_chunk(units: list[Unit], intended_ns: int) -> list[tuple[Any, ...]]:
    w = _worker
    return run_chunk(w["scenario"].module.work, units, w["ctx"], w["t0"], intended_ns,
                     w["name"], w["stop"] is not None, w["stop"])


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
            if r[7] != "not-run":
                self._ns += r[6] - r[5]
                self._units += 1
        if self.fixed is None and self._units:
            mean = self._ns / self._units
            self.size = max(1, min(MAX_CHUNK, int(TARGET_CHUNK_NS / max(mean, 1))))


@register
class ProcessesMode(Mode):
    name = "processes"
    description = "ProcessPoolExecutor with --workers processes, adaptive chunks"
    simplicity = 4
    default_workers = os.cpu_count() or 2

    def run(self, ex: Execution) -> dict[str, Any]:
        opts = ex.options
        context = multiprocessing.get_context("spawn")  # safe with threads, same on every OS
        stop = context.Event() if opts.on_error == "stop" else None
        pending = list(reversed(ex.units))
        sizer = ChunkSizer(opts.chunksize, opts.workers)
        chunks_sent = 0
        in_flight: dict[Future, list[Unit]] = {}
        with ProcessPoolExecutor(max_workers=opts.workers, mp_context=context,
                                 initializer=_init_worker,
                                 initargs=(str(ex.scenario.path), ex.ctx, ex.t0_ns, stop)) as pool:
            submitted_at = ex.now_ns()
            while pending or in_flight:
                if ex.stop_requested and pending:
                    ex.recorder.add_many([not_run_tuple(u, "stopped after an earlier failure",
                                                        submitted_at) for u in reversed(pending)])
                    pending.clear()
                while pending and len(in_flight) < 2 * opts.workers:
                    batch = [pending.pop() for _ in range(sizer.next_size(len(pending)))]
                    in_flight[pool.submit(_run_chunk, batch, submitted_at)] = batch
                    chunks_sent += 1
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = in_flight.pop(future)
                    try:
                        records = future.result()
                    except BrokenProcessPool as exc:
                        # A worker died (crash, OOM kill): its units failed, the rest cannot run.
                        now = ex.now_ns()
                        ex.recorder.add_many([error_tuple(u, "", submitted_at, now, now, exc)
                                              for u in batch])
                        ex.recorder.add_many([not_run_tuple(u, "process pool broken")
                                              for u in reversed(pending)])
                        pending.clear()
                        continue
                    ex.recorder.add_many(records)
                    sizer.observe(records)
        return {"workers": opts.workers, "chunks": chunks_sent, "final_chunksize": sizer.size,
                "start_method": "spawn"}
