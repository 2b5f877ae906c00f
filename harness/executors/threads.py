"""threads: a ``ThreadPoolExecutor`` with ``--workers`` threads."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from harness.executors import register
from harness.executors.base import Executor
from harness.outcomes import run_timed, worker_name
from harness.scenario import Unit

START_TIMEOUT_S = 30


@register
class ThreadsExecutor(Executor):
    name = "threads"
    description = "ThreadPoolExecutor with --workers threads"
    simplicity = 2

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="harness-unit")
        # Start every thread now (the pool starts them lazily, one per submit): thread
        # start-up belongs to set-up, not to the first units' service time.
        barrier = threading.Barrier(self.workers + 1)
        for _ in range(self.workers):
            self._pool.submit(barrier.wait, START_TIMEOUT_S)
        barrier.wait(START_TIMEOUT_S)

    def submit(self, unit: Unit) -> Future:
        return self._pool.submit(self._run, unit)

    def _run(self, unit: Unit) -> tuple[Any, ...]:
        if self._stopping:
            return self.not_run(unit)
        return run_timed(self._work, unit, self.setup.ctx, self.t0_ns, worker_name())

    def shutdown(self) -> None:
        if hasattr(self, "_pool"):  # start() may have failed before the pool existed
            self._pool.shutdown(wait=True)
