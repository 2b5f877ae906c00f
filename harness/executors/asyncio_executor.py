"""asyncio: native ``awork`` coroutines under a semaphore of ``--workers``, on an event
loop that runs in its own thread for the whole cell.

Where the scenario has no ``awork``, units run through ``asyncio.to_thread`` on a pool of
``--workers`` threads and the executor labels itself ``asyncio(to_thread)``: results never
pretend a thread pool is native async I/O. The loop is started in set-up and closed
(``aclose_worker`` first: async resources must close on the loop that made them) in
tear-down, so neither is counted in the run.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from harness.discovery import LoadedScenario
from harness.executors import register
from harness.executors.base import Executor
from harness.outcomes import error_tuple, result_tuple
from harness.scenario import Unit


@register
class AsyncioExecutor(Executor):
    name = "asyncio"
    description = "asyncio: awork under a semaphore (or asyncio.to_thread when no awork)"
    simplicity = 3

    @classmethod
    def kind(cls, scenario: LoadedScenario) -> str:
        return cls.name if scenario.has("awork") else "asyncio(to_thread)"

    def start(self) -> None:
        scenario = self.setup.scenario
        self._native = scenario.has("awork")
        self._call = scenario.function("awork") if self._native else None
        self._loop = asyncio.new_event_loop()
        # The default executor has min(32, cpus + 4) threads; honour --workers instead, for a
        # plain work() and for a native awork() that hands blocking parts to asyncio.to_thread.
        self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="harness-unit")
        self._loop.set_default_executor(self._threads)
        self._thread = threading.Thread(target=self._loop.run_forever, name="harness-loop",
                                        daemon=True)
        self._thread.start()
        self._semaphore = self._call_in_loop(self._make_semaphore())
        self._name = f"{os.getpid()}:{self._thread.ident % 100000}"

    async def _make_semaphore(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self.workers)

    def _call_in_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(self, unit: Unit) -> Future:
        return asyncio.run_coroutine_threadsafe(self._one(unit), self._loop)

    async def _one(self, unit: Unit) -> tuple[Any, ...]:
        async with self._semaphore:
            if self._stopping:
                return self.not_run(unit)
            ctx, t0 = self.setup.ctx, self.t0_ns
            start = time.perf_counter_ns()
            try:
                if self._native:
                    result = await self._call(unit, ctx)
                else:
                    result = await asyncio.to_thread(self._work, unit, ctx)
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                # a unit's failure is data; SystemExit would otherwise end the loop's thread
                # and leave every other unit's future unresolved
                return error_tuple(unit, self._name, start - t0, time.perf_counter_ns() - t0,
                                   exc)
            return result_tuple(unit, self._name, start - t0, time.perf_counter_ns() - t0,
                                result)

    def shutdown(self) -> None:
        if not hasattr(self, "_thread"):  # start() failed before the loop ran
            return
        close = self.setup.scenario.function("aclose_worker")
        try:
            if self._native and close is not None:
                self._call_in_loop(close(self.setup.ctx))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            self._threads.shutdown(wait=True)

    def info(self) -> dict[str, Any]:
        return {"concurrency": self.workers, "native": self._native}
