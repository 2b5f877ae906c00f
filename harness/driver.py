"""The driver: one measurement contract for every executor under every policy.

It runs in the cell's child process and owns everything a number means:

* **phases**: ``setup`` (the executor starts: pool spawn, cluster start), ``run`` (first
  submit to last completion: the makespan, compared with the scenario's bound) and
  ``teardown`` (shutdown). All three are recorded; only ``run`` is the makespan.
* **t0 and the arrival model**: t0 is the instant before the first submit. Every unit is
  due at t0 (a batch job) unless the scenario declares a schedule (``schedule(ctx, units)``
  returns each unit's arrival offset in seconds); a unit is never handed to the policy
  before it is due, and its latency is measured from then (no coordinated omission).
* **records**: every future's outcome is collected, so no exception can vanish; a unit
  never handed out gets a not-run record saying why. A broken executor
  (``concurrent.futures.BrokenExecutor``) is reported as ``broken``: the cell is crashed
  and censored, never a result.

The policy decides when and in which order (:mod:`harness.policies`), the executor where
(:mod:`harness.executors`); neither reads a clock for a record.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable

from harness.blackbox import BlackBox
from harness.executors.base import DoneFuture, Executor
from harness.outcomes import DUE, END, START, STATUS, STOPPED, error_class, error_tuple, not_run_tuple
from harness.policies.base import Policy
from harness.scenario import Unit


DISPATCH_BATCH = 64  # units taken from the policy per lock round


class Recorder:
    """Thread-safe buffer of unit record tuples, shipped to the parent in batches by a
    flusher thread of its own.

    The flusher ships what is buffered every ``interval_ns``, and at once when ``batch``
    records are waiting or after a unit that took at least ``slow_ns``. Shipping (a
    pickle and a pipe write, tens of microseconds) is not done by a thread that finished
    a unit on an executor's behalf: on an event loop or a pool's callback thread it would
    stall every unit in flight and inflate their times.

    A slow unit's record must outlive a crash of the cell process that comes right after
    it (the next unit may kill it before the flusher runs). When the thread that owns the
    recorder (the driver's: a serial loop's units run there) finishes one, it writes the
    record to ``blackbox`` (:mod:`harness.blackbox`, memory the parent can read after a
    crash) and leaves the shipping to the flusher's next round, waking nobody: after a
    unit's sleep the CPU's caches are cold, and shipping at once cost 12-15 us there
    against ~1 us hot (measured on this machine), straight onto the next unit's start.
    Without a box, or when it is full, the owner ships the record itself.
    """

    def __init__(self, sink: Callable[[list[tuple[Any, ...]]], None], *, batch: int = 2000,
                 interval_ns: int = 100_000_000, slow_ns: int = 5_000_000,
                 blackbox: BlackBox | None = None):
        self._sink = sink
        self._batch = batch
        self._interval_s = interval_ns / 1e9
        self._slow = slow_ns
        self._box = blackbox
        self._shipped = 0  # how many of the box's records the channel has carried
        # deque.append and popleft are atomic under the GIL, so adding takes no lock (the
        # hot path: ~0.3 us); shipping drains under a lock.
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._owner = threading.get_ident()
        self._thread = threading.Thread(target=self._loop, name="harness-recorder",
                                        daemon=True)
        self._thread.start()

    def add(self, record: tuple[Any, ...]) -> None:
        slow = record[END] - record[START] >= self._slow
        buffer = self._buffer
        buffer.append(record)  # before the box: a logged record is always in the buffer
        if slow and threading.get_ident() == self._owner:
            box = self._box
            if box is None or not box.log(record, self._shipped):
                self.flush()
            return
        if slow or len(buffer) >= self._batch:
            self._wake.set()

    def flush(self) -> None:
        """Ship everything buffered now (from any thread)."""
        with self._lock:
            # Read before draining: every record logged by then is in the buffer.
            logged = self._box.logged if self._box is not None else 0
            buffer = self._buffer
            if buffer:
                # Drain only what is there: a record added meanwhile goes with the next one.
                self._sink([buffer.popleft() for _ in range(len(buffer))])
            self._shipped = logged

    def close(self) -> None:
        """Stop the flusher and ship what is left."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self.flush()


@dataclass
class DriveResult:
    """What the driver measured about the cell as a whole."""

    t0_ns: int
    setup_ns: int
    run_ns: int
    teardown_ns: int
    broken: str | None = None    # the executor broke: the cell is crashed
    info: dict[str, Any] = field(default_factory=dict)


class Driver:
    """Drive ``units`` through ``policy`` onto ``executor``, recording every unit."""

    def __init__(self, executor: Executor, policy: Policy, recorder: Recorder, *,
                 stop_on_error: bool = False, schedule_s: list[float] | None = None):
        self.executor = executor
        self.policy = policy
        self.recorder = recorder
        self.stop_on_error = stop_on_error
        self._schedule = schedule_s
        self._cond = threading.Condition(threading.RLock())
        self._outstanding = 0
        self._waiters = 0
        self._stopping = False
        self._stop_reason = STOPPED
        self.broken: str | None = None
        self._due: dict[str, int] = {}

    def run(self, units: list[Unit], on_t0: Callable[[int], None] = lambda t0: None,
            on_run_end: Callable[[], None] = lambda: None) -> DriveResult:
        """Set up, run every unit, tear down; the phases and what broke, if anything.
        ``on_t0`` and ``on_run_end`` are called at the run phase's two ends."""
        s0 = perf_counter_ns()
        try:
            self.executor.start()  # inside: a pool that half-started is still shut down
            self.policy.capacity = max(1, self.executor.workers)  # e.g. a user's cluster
            t0 = perf_counter_ns()
            self.executor.t0_ns = t0
            on_t0(t0)
            self.executor.run_started()
            self._dispatch(units, t0)
            self._wait_outstanding()
            run_end = perf_counter_ns()
            self.executor.run_ended()
            on_run_end()
            self.recorder.flush()
        finally:
            self.executor.shutdown()
        end = perf_counter_ns()
        info = {**self.executor.info(), **self.policy.info()}
        return DriveResult(t0, t0 - s0, run_end - t0, end - run_end, self.broken, info)

    # ---- dispatch ----

    def _arrivals(self, units: list[Unit], t0: int) -> deque[tuple[int, Unit]]:
        if self._schedule is None:
            return deque((0, u) for u in units)
        if len(self._schedule) != len(units) or not all(
                math.isfinite(s) and s >= 0 for s in self._schedule):
            raise ValueError(f"schedule(ctx, units) must give one finite offset >= 0 "
                             f"seconds per unit: got {len(self._schedule)} for "
                             f"{len(units)} units")
        offsets = [int(s * 1e9) for s in self._schedule]
        self._due = {u.id: due for u, due in zip(units, offsets)}
        return deque(sorted(zip(offsets, units), key=lambda pair: pair[0]))

    def _dispatch(self, units: list[Unit], t0: int) -> None:
        arrivals = self._arrivals(units, t0)
        policy, cond = self.policy, self._cond
        while True:
            with cond:
                if self._stopping:
                    break
                now = perf_counter_ns() - t0
                while arrivals and arrivals[0][0] <= now:
                    policy.arrive(arrivals.popleft()[1])
                # Up to a batch per lock round: a loop of fast units pays the lock once.
                batch = []
                while len(batch) < DISPATCH_BATCH and (unit := policy.next(now)) is not None:
                    batch.append(unit)
                if not batch:
                    if not arrivals and not policy.pending:
                        break  # everything was handed out
                    self._wait(self._timeout(now, arrivals))
                    continue
                self._outstanding += len(batch)
            self._submit_batch(batch)
        left = policy.remaining() + [u for _, u in arrivals]
        self.recorder_add_many([not_run_tuple(u, self._stop_reason) for u in left])

    def _wait(self, timeout: float | None) -> None:
        """Wait (holding the condition) until a unit finishes or ``timeout`` passes."""
        if self._outstanding == 0:
            if timeout is None:  # nothing runs and the policy names no time: it is stuck
                raise RuntimeError(f"policy {self.policy.name} hands out nothing and names "
                                   "no time to ask again, with no unit running")
            if self.executor.synchronous:  # nothing else can finish meanwhile
                time.sleep(timeout)
                return
        self._waiters += 1
        try:
            self._cond.wait(timeout)
        finally:
            self._waiters -= 1

    def _submit_batch(self, batch: list[Unit]) -> None:
        if self.executor.synchronous and not self._due:
            self._run_inline(batch)
            return
        for index, unit in enumerate(batch):
            if self._stopping:  # a failure under --on-error stop, or a broken executor
                self._never_submitted(batch[index:])
                return
            self._submit(unit)

    def _run_inline(self, batch: list[Unit]) -> None:
        """A synchronous executor's batch: the same accounting as ``_done``, with its
        lookups hoisted out of the loop (a serial loop of 100 us units must cost the
        harness well under 5 %). Anything unusual takes the general path."""
        run_now, add, finished = self.executor.run_now, self.recorder.add, self._finished
        for index, unit in enumerate(batch):
            if self._stopping:
                self._never_submitted(batch[index:])
                return
            try:
                record = run_now(unit)
            except Exception as exc:  # the executor refused it: the general path says why
                self._done(unit, None, exc)
                continue
            add(record)
            if finished(unit, record):
                self.executor.request_stop()

    def _never_submitted(self, units: list[Unit]) -> None:
        self.recorder_add_many([not_run_tuple(u, self._stop_reason) for u in units])
        with self._cond:
            self._outstanding -= len(units)
            for unit in units:
                self.policy.finished(unit)
            self._cond.notify_all()

    def _timeout(self, now: int, arrivals: deque[tuple[int, Unit]]) -> float | None:
        wakes = [w for w in (self.policy.wake_at(now),
                             arrivals[0][0] if arrivals else None) if w is not None]
        return max(0.0, (min(wakes) - now) / 1e9) if wakes else None

    def _submit(self, unit: Unit) -> None:
        try:
            future = self.executor.submit(unit)
        except Exception as exc:  # the executor refused it (shut down, broken): data too
            self._done(unit, None, exc)
            return
        if type(future) is DoneFuture:
            self._done(unit, future)  # a synchronous executor: no callback to register
        else:
            future.add_done_callback(lambda f: self._done(unit, f))

    def _done(self, unit: Unit, future: Any, refused: BaseException | None = None) -> None:
        """A unit's future resolved (on whatever thread the executor uses). The unit is
        accounted for whatever happens here: a callback that raised would otherwise leave
        the driver waiting for it forever."""
        record: tuple[Any, ...] = not_run_tuple(unit, "the harness lost its record")
        try:
            record = self._record_of(unit, future, refused)
            self.recorder.add(record)
        finally:
            if self.executor.synchronous:  # every unit completes on this thread: no lock
                stop_now = self._finished(unit, record)
            else:
                with self._cond:
                    stop_now = self._finished(unit, record)
                    if self._waiters:  # notifying an empty condition still costs ~1 us
                        self._cond.notify_all()
            if stop_now:
                self.executor.request_stop()

    def _record_of(self, unit: Unit, future: Any, refused: BaseException | None
                   ) -> tuple[Any, ...]:
        try:
            if refused is not None:
                raise refused
            record = future.result()
        except BaseException as exc:  # an executor failure, not the unit's own (run_timed)
            now = perf_counter_ns() - self.executor.t0_ns
            record = error_tuple(unit, "", now, now, exc)
            if isinstance(exc, BrokenExecutor) and self.broken is None:
                self.broken = f"{error_class(exc)}: {exc}"
        if self._due:  # a declared schedule: the unit was due at its arrival, not at t0
            record = record[:DUE] + (self._due[unit.id],) + record[DUE + 1:]
        return record

    def _finished(self, unit: Unit, record: tuple[Any, ...]) -> bool:
        """Account a finished unit; True when it is the one that makes the run stop."""
        self._outstanding -= 1
        if self.policy.sees_records:  # an adaptive policy learns from the outcome
            self.policy.finished(unit, record)
        else:
            self.policy.finished(unit)
        if self._stopping or not (self.broken or (self.stop_on_error
                                                  and record[STATUS] == "error")):
            return False
        self._stopping = True
        self._stop_reason = f"executor broken: {self.broken}" if self.broken else STOPPED
        return True

    def recorder_add_many(self, records: list[tuple[Any, ...]]) -> None:
        for record in records:
            self.recorder.add(record)

    def _wait_outstanding(self) -> None:
        with self._cond:
            while self._outstanding:
                self._wait(None)


def wall_clock_of(t0_ns: int) -> int:
    """The wall-clock instant (``time.time_ns``) of a ``perf_counter_ns`` reading."""
    return time.time_ns() - (perf_counter_ns() - t0_ns)
