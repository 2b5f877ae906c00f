"""asyncio: native ``awork`` coroutines under a semaphore of ``--workers``.

Where the scenario has no ``awork``, units run through ``asyncio.to_thread`` on a pool of
``--workers`` threads and the mode labels itself ``asyncio(to_thread)``: results never
pretend a thread pool is native async I/O.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.discovery import LoadedScenario
from harness.modes import register
from harness.modes.base import (Execution, Mode, ModeOptions, error_tuple, not_run_tuple,
                                result_tuple)
from harness.scenario import Unit


@register
class AsyncioMode(Mode):
    name = "asyncio"
    description = "asyncio: awork under a semaphore (or asyncio.to_thread when no awork)"
    simplicity = 3

    def label(self, scenario: LoadedScenario, options: ModeOptions) -> str:
        return self.name if scenario.has("awork") else "asyncio(to_thread)"

    def run(self, ex: Execution) -> dict[str, Any]:
        native = ex.scenario.has("awork")
        return asyncio.run(self._main(ex, native))

    async def _main(self, ex: Execution, native: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        executor = None
        if not native:
            # The default executor has min(32, cpus + 4) threads; honour --workers instead.
            executor = ThreadPoolExecutor(ex.options.workers, thread_name_prefix="harness-unit")
            loop.set_default_executor(executor)
        semaphore = asyncio.Semaphore(ex.options.workers)
        submitted = ex.now_ns()
        worker = f"{os.getpid()}:{threading.get_ident() % 100000}"
        awork = ex.scenario.function("awork")
        work = ex.scenario.module.work

        async def one(unit: Unit) -> None:
            async with semaphore:
                if ex.stop_requested:
                    ex.recorder.add(not_run_tuple(unit, "stopped after an earlier failure",
                                                  submitted))
                    return
                start = time.perf_counter_ns()
                try:
                    if native:
                        result = await awork(unit, ex.ctx)
                    else:
                        result = await asyncio.to_thread(work, unit, ex.ctx)
                except Exception as exc:  # a unit's failure is data
                    end = time.perf_counter_ns()
                    ex.recorder.add(error_tuple(unit, worker, submitted, start - ex.t0_ns,
                                                end - ex.t0_ns, exc))
                    return
                end = time.perf_counter_ns()
                ex.recorder.add(result_tuple(unit, worker, submitted, start - ex.t0_ns,
                                             end - ex.t0_ns, result))

        try:
            await asyncio.gather(*(one(u) for u in ex.units))
            close = ex.scenario.function("aclose_worker")
            if native and close is not None:
                await close(ex.ctx)  # async resources must close on the loop that made them
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
        return {"concurrency": ex.options.workers, "native": native}
