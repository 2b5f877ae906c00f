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
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

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


def time_unit(work: Callable[[Unit, Context], Any], unit: Unit, ctx: Context,
              t0_ns: int, intended_ns: int, worker: str) -> tuple[Any, ...]:
    """Run one unit and return its record tuple (times relative to ``t0_ns``)."""
    start = time.perf_counter_ns()
    try:
        result = work(unit, ctx)
    except UnitFailure as failure:
        end = time.perf_counter_ns()
        return (unit.id, unit.group, worker, failure.attempts, intended_ns, start - t0_ns,
                end - t0_ns, "error", error_class(failure.cause), _message(failure.cause),
                0, 0, failure.retries)
    except Exception as exc:  # every failure of a unit is data, never a crash of the cell
        end = time.perf_counter_ns()
        return (unit.id, unit.group, worker, getattr(exc, "attempts", 1), intended_ns,
                start - t0_ns, end - t0_ns, "error", error_class(exc), _message(exc), 0, 0, {})
    end = time.perf_counter_ns()
    return result_tuple(unit, worker, intended_ns, start - t0_ns, end - t0_ns, result)


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


def not_run_tuple(unit: Unit, reason: str, intended_ns: int = 0) -> tuple[Any, ...]:
    return (unit.id, unit.group, "", 0, intended_ns, -1, -1, "not-run", "NotRun", reason,
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
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._last_flush = time.perf_counter_ns()
        self.done = 0
        self.errors = 0
        self.failed = threading.Event()  # set at the first failed unit (for --on-error stop)

    def add(self, record: tuple[Any, ...]) -> None:
        with self._lock:
            self._buffer.append(record)
            self.done += 1
            if record[7] == "error":
                self.errors += 1
                self.failed.set()
            now = time.perf_counter_ns()
            if (len(self._buffer) >= self._batch or now - self._last_flush >= self._interval
                    or record[6] - record[5] >= self._slow):
                self._flush_locked(now)

    def add_many(self, records: list[tuple[Any, ...]]) -> None:
        for record in records:
            self.add(record)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked(time.perf_counter_ns())

    def _flush_locked(self, now: int) -> None:
        self._last_flush = now
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._sink(batch)


@dataclass
class Execution:
    """Everything a mode needs to execute one cell's units."""

    scenario: LoadedScenario
    ctx: Context
    units: list[Unit]
    options: ModeOptions
    recorder: Recorder
    t0_ns: int

    @property
    def stop_requested(self) -> bool:
        return self.options.on_error == "stop" and self.recorder.failed.is_set()

    def run_unit(self, unit: Unit, intended_ns: int = -1) -> None:
        """Execute one unit in this process and record it (not-run once a stop is requested)."""
        if intended_ns < 0:
            intended_ns = time.perf_counter_ns() - self.t0_ns
        if self.stop_requested:
            self.recorder.add(not_run_tuple(unit, "stopped after an earlier failure",
                                            intended_ns))
            return
        worker = f"{os.getpid()}:{threading.get_ident() % 100000}"
        self.recorder.add(time_unit(self.scenario.module.work, unit, self.ctx, self.t0_ns,
                                    intended_ns, worker))

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
