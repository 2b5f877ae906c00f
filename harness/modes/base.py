"""What every execution mode shares: options, the unit timer and the record buffer.

A mode runs inside the cell's child process. It executes units through
:meth:`Execution.run_unit` (or, in worker processes, :func:`time_unit`), which times each
unit with ``perf_counter_ns`` and turns exceptions into records. Records are plain tuples
(see ``harness.records.UNIT_FIELDS``) batched by :class:`Recorder` and shipped to the
parent, which writes them: the workload process never spends time encoding JSON.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable, ClassVar, Iterable

from harness.discovery import LoadedScenario
from harness.scenario import Context, Unit, UnitFailure, UnitResult

ERROR_POLICIES = ("continue", "stop")
MAX_ERROR_MESSAGE = 500


@dataclass(frozen=True)
class ModeOptions:
    """Execution settings of one cell, parsed from the CLI at the edge."""

    workers: int = 8
    on_error: str = "continue"
    group_cap: int = 3
    stagger_s: float = 0.2
    chunksize: int | None = None  # processes: None = automatic (keeps ~8 chunks per worker)
    dask_address: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def error_class(exc: BaseException) -> str:
    """A stable class name for an error; SQLSTATE appended where the driver gives one."""
    name = type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{name}[{sqlstate}]" if sqlstate else name


def _message(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text[:MAX_ERROR_MESSAGE]


def worker_name() -> str:
    """``pid:thread`` of the calling thread, cached: formatting it per unit costs ~1 us."""
    ident = threading.get_ident()
    name = _WORKER_NAMES.get(ident)
    if name is None:
        name = _WORKER_NAMES[ident] = f"{os.getpid()}:{ident % 100000}"
    return name


_WORKER_NAMES: dict[int, str] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKER_NAMES.clear)  # a forked child has a new pid


def time_unit(work: Callable[[Unit, Context], Any], unit: Unit, ctx: Context,
              t0_ns: int, intended_ns: int, worker: str) -> tuple[Any, ...]:
    """Run one unit and return its record tuple (times relative to ``t0_ns``).

    ``intended_ns < 0`` means the unit was due when it started (a loop: no queueing).
    This is the hot path of every mode: keep it to two clock reads and one tuple.
    """
    start = perf_counter_ns()
    if intended_ns < 0:
        intended_ns = start - t0_ns
    try:
        result = work(unit, ctx)
    except Exception as exc:  # every failure of a unit is data, never a crash of the cell
        return error_tuple(unit, worker, intended_ns, start - t0_ns,
                           perf_counter_ns() - t0_ns, exc)
    return result_tuple(unit, worker, intended_ns, start - t0_ns, perf_counter_ns() - t0_ns,
                        result)


def run_chunk(work: Callable[[Unit, Context], Any], units: list[Unit], ctx: Context,
              t0_ns: int, intended_ns: int, worker: str, stop_on_error: bool,
              shared_stop: Any = None) -> list[tuple[Any, ...]]:
    """Run a chunk of units in a worker process, timing each (processes and dask modes).

    With ``stop_on_error`` the chunk stops at its first failed unit (the rest are not-run)
    and sets ``shared_stop`` (an Event, when the mode has one) so other workers stop too.
    """
    records = []
    stopped = False
    for unit in units:
        if stopped or (shared_stop is not None and shared_stop.is_set()):
            records.append(not_run_tuple(unit, "stopped after an earlier failure", intended_ns))
            continue
        record = time_unit(work, unit, ctx, t0_ns, intended_ns, worker)
        records.append(record)
        if stop_on_error and record[7] == "error":
            stopped = True
            if shared_stop is not None:
                shared_stop.set()
    return records


def result_tuple(unit: Unit, worker: str, intended_ns: int, start_ns: int, end_ns: int,
                 result: Any) -> tuple[Any, ...]:
    """Record tuple of a unit that finished without raising."""
    if isinstance(result, UnitResult):
        return (unit.id, unit.group, worker, result.attempts, intended_ns, start_ns, end_ns,
                "ok", None, None, result.rows, result.bytes, result.retries)
    return (unit.id, unit.group, worker, 1, intended_ns, start_ns, end_ns, "ok", None, None,
            0, 0, {})


def error_tuple(unit: Unit, worker: str, intended_ns: int, start_ns: int, end_ns: int,
                exc: BaseException) -> tuple[Any, ...]:
    """Record tuple of a unit that raised (used by modes that catch errors themselves)."""
    if isinstance(exc, UnitFailure):
        return (unit.id, unit.group, worker, exc.attempts, intended_ns, start_ns, end_ns,
                "error", error_class(exc.cause), _message(exc.cause), 0, 0, exc.retries)
    return (unit.id, unit.group, worker, getattr(exc, "attempts", 1), intended_ns, start_ns,
            end_ns, "error", error_class(exc), _message(exc), 0, 0, {})


def not_run_tuple(unit: Unit, reason: str, intended_ns: int = 0,
                  error_class: str = "NotRun") -> tuple[Any, ...]:
    """Record tuple of a unit that never ran (``error_class`` says why: NotRun after a
    stop, CellTimeout / CellCrashed / ... when the cell ended before reaching it)."""
    return (unit.id, unit.group, "", 0, intended_ns, -1, -1, "not-run", error_class, reason,
            0, 0, {})


class Recorder:
    """Thread-safe buffer of unit record tuples, shipped to the parent in batches.

    Flushes when ``batch`` records are buffered, when ``interval_ns`` has passed since the
    last flush, or right away after a unit that took at least ``slow_ns``: a flush costs
    tens of microseconds, negligible next to a slow unit, and a crash then loses no
    finished unit; fast units are batched so recording stays cheap.
    """

    def __init__(self, sink: Callable[[list[tuple[Any, ...]]], None], *, batch: int = 2000,
                 interval_ns: int = 100_000_000, slow_ns: int = 5_000_000):
        self._sink = sink
        self._batch = batch
        self._interval = interval_ns
        self._slow = slow_ns
        # deque.append and popleft are atomic under the GIL, so adding takes no lock (the
        # hot path of every mode: ~0.4 us instead of ~1.2 us); flushing drains under a lock.
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._last_flush = perf_counter_ns()
        self.failed = threading.Event()  # set at the first failed unit (for --on-error stop)

    def add(self, record: tuple[Any, ...]) -> None:
        buffer = self._buffer
        buffer.append(record)
        if record[7] == "error":
            self.failed.set()
        now = perf_counter_ns()
        if (len(buffer) >= self._batch or now - self._last_flush >= self._interval
                or record[6] - record[5] >= self._slow):
            with self._lock:
                self._flush_locked(now)

    def add_many(self, records: list[tuple[Any, ...]]) -> None:
        for record in records:
            self.add(record)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked(perf_counter_ns())

    def _flush_locked(self, now: int) -> None:
        self._last_flush = now
        buffer = self._buffer
        if buffer:
            # Drain only what is there now: a record added meanwhile waits for the next flush.
            self._sink([buffer.popleft() for _ in range(len(buffer))])


@dataclass
class Execution:
    """Everything a mode needs to execute one cell's units."""

    scenario: LoadedScenario
    ctx: Context
    units: list[Unit]
    options: ModeOptions
    recorder: Recorder
    t0_ns: int

    def __post_init__(self) -> None:
        # Looked up once: run_unit is the hot path of the in-process modes.
        self._work = self.scenario.module.work
        self._stop_on_error = self.options.on_error == "stop"

    @property
    def stop_requested(self) -> bool:
        return self._stop_on_error and self.recorder.failed.is_set()

    def run_unit(self, unit: Unit, intended_ns: int = -1) -> None:
        """Execute one unit in this process and record it (not-run once a stop is requested).

        ``intended_ns < 0``: the unit is due when it starts (a loop has no queue)."""
        if self._stop_on_error and self.recorder.failed.is_set():
            self.recorder.add(not_run_tuple(unit, "stopped after an earlier failure",
                                            self.now_ns() if intended_ns < 0 else intended_ns))
            return
        self.recorder.add(time_unit(self._work, unit, self.ctx, self.t0_ns, intended_ns,
                                    worker_name()))

    def run_in_order(self, units: Iterable[Unit]) -> None:
        """Execute ``units`` one after another in this thread, each due when it starts.

        The same records as :meth:`run_unit` per unit, with its lookups hoisted out of the
        loop: a loop of ~100 us units must cost the harness well under 5%.
        """
        if self._stop_on_error:
            for unit in units:
                self.run_unit(unit)
            return
        add, work, ctx, t0, name = (self.recorder.add, self._work, self.ctx, self.t0_ns,
                                    worker_name())
        for unit in units:
            add(time_unit(work, unit, ctx, t0, -1, name))

    def now_ns(self) -> int:
        return time.perf_counter_ns() - self.t0_ns


class Mode(ABC):
    """An execution mode. Subclasses register with ``@register`` in ``harness.modes``."""

    name: ClassVar[str]
    description: ClassVar[str]
    simplicity: ClassVar[int]  # verdict tie-break: lower is simpler
    default_workers: ClassVar[int | None] = 8

    def label(self, scenario: LoadedScenario, options: ModeOptions) -> str:
        """How the mode appears in tables; says so when it falls back to something else."""
        return self.name

    def concurrency(self, options: ModeOptions, n_units: int) -> int:
        """The most units this mode runs at once (used for connection pool sizing)."""
        return max(1, min(options.workers, n_units))

    def available(self) -> tuple[bool, str]:
        """Whether the mode can run here; the reason when not."""
        return True, ""

    @abstractmethod
    def run(self, ex: Execution) -> dict[str, Any]:
        """Execute every unit of ``ex`` (recording each); return extra info for the cell."""
