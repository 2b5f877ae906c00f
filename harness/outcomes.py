"""Unit record tuples: how one unit's outcome is written down, wherever it ran.

Records travel as plain tuples in ``harness.records.UNIT_FIELDS`` order (cheap to build and
to pickle in the hot loop; the parent turns them into lines). Times are ns relative to the
cell's t0 on the ``perf_counter_ns`` clock. :func:`run_timed` is the one place a unit is
timed: the driver hands it to every executor, which calls it where the unit runs (this
thread, a pool thread, a worker process, a Dask worker).
"""

from __future__ import annotations

import os
import threading
from time import perf_counter_ns
from typing import Any, Callable

from harness.scenario import Context, Unit, UnitFailure, UnitResult

MAX_ERROR_MESSAGE = 500
STATUS = 7  # index of the status field in a record tuple
START, END, DUE = 5, 6, 4
RETRIES = 12  # the retries-by-cause dict


def error_class(exc: BaseException) -> str:
    """A stable class name for an error; SQLSTATE appended where the driver gives one."""
    name = type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{name}[{sqlstate}]" if sqlstate else name


def _message(exc: BaseException) -> str:
    return str(exc).strip().replace("\n", " ")[:MAX_ERROR_MESSAGE]


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


def result_tuple(unit: Unit, worker: str, start_ns: int, end_ns: int,
                 result: Any) -> tuple[Any, ...]:
    """Record of a unit that finished without raising (due 0: the driver sets it)."""
    if isinstance(result, UnitResult):
        return (unit.id, unit.group, worker, result.attempts, 0, start_ns, end_ns,
                "ok", None, None, result.rows, result.bytes, result.retries)
    return (unit.id, unit.group, worker, 1, 0, start_ns, end_ns, "ok", None, None, 0, 0, {})


def error_tuple(unit: Unit, worker: str, start_ns: int, end_ns: int,
                exc: BaseException) -> tuple[Any, ...]:
    """Record of a unit that raised; a :class:`UnitFailure` brings its attempts/retries."""
    if isinstance(exc, UnitFailure):
        return (unit.id, unit.group, worker, exc.attempts, 0, start_ns, end_ns,
                "error", error_class(exc.cause), _message(exc.cause), 0, 0, exc.retries)
    return (unit.id, unit.group, worker, getattr(exc, "attempts", 1), 0, start_ns, end_ns,
            "error", error_class(exc), _message(exc), 0, 0, {})


def not_run_tuple(unit: Unit, reason: str, error_class: str = "NotRun") -> tuple[Any, ...]:
    """Record of a unit that never ran (``error_class`` says why: NotRun after a stop,
    CellTimeout / CellCrashed / ... when the cell ended before reaching it)."""
    return (unit.id, unit.group, "", 0, 0, -1, -1, "not-run", error_class, reason, 0, 0, {})


def run_timed(work: Callable[[Unit, Context], Any], unit: Unit, ctx: Context, t0_ns: int,
              worker: str) -> tuple[Any, ...]:
    """Run one unit and return its record (times relative to ``t0_ns``).

    The hot path of every executor: two clock reads and one tuple. Every exception of a
    unit is data, never a crash of the cell.
    """
    start = perf_counter_ns()
    try:
        result = work(unit, ctx)
    except Exception as exc:
        return error_tuple(unit, worker, start - t0_ns, perf_counter_ns() - t0_ns, exc)
    return result_tuple(unit, worker, start - t0_ns, perf_counter_ns() - t0_ns, result)


STOPPED = "stopped after an earlier failure"


def run_chunk(work: Callable[[Unit, Context], Any], units: list[Unit], ctx: Context,
              t0_ns: int, worker: str, stop: Any = None,
              stop_on_error: bool = False) -> list[tuple[Any, ...]]:
    """Run a chunk of units where they were shipped (a worker process, a Dask worker).

    Under ``--on-error stop`` (``stop_on_error``) the chunk stops at its first failed unit
    and sets ``stop`` (an Event shared by every worker of the cell, or None), which every
    chunk checks before each unit: the rest are recorded as not-run at once, not after the
    failing chunk has travelled back to the cell.
    """
    records = []
    stopped = False
    for unit in units:
        if stopped or (stop is not None and stop.is_set()):
            records.append(not_run_tuple(unit, STOPPED))
            continue
        record = run_timed(work, unit, ctx, t0_ns, worker)
        records.append(record)
        if stop_on_error and record[STATUS] == "error":
            stopped = True
            if stop is not None:
                stop.set()
    return records
