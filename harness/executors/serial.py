"""serial: each unit runs in the calling thread as it is submitted, one after another."""

from __future__ import annotations

from typing import Any

from harness.executors import register
from harness.executors.base import DoneFuture, Executor
from harness.outcomes import run_timed, worker_name
from harness.scenario import Unit


@register
class SerialExecutor(Executor):
    name = "serial"
    description = "a plain loop: one unit at a time, in the cell's own thread"
    simplicity = 0
    default_workers = 1
    shows_workers = False
    synchronous = True

    @classmethod
    def concurrency(cls, workers: int, n_units: int) -> int:
        return 1

    def __init__(self, setup: Any):
        super().__init__(setup)
        self.workers = 1
        self._ctx = setup.ctx
        self._name = worker_name()  # the driver's thread: every unit runs on it

    def submit(self, unit: Unit) -> DoneFuture:
        # Synchronous: the unit has run when submit returns (a loop has no queue).
        return DoneFuture(self.run_now(unit))

    def run_now(self, unit: Unit) -> tuple[Any, ...]:
        return run_timed(self._work, unit, self._ctx, self.t0_ns, self._name)
