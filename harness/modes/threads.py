"""threads: a ThreadPoolExecutor with ``--workers`` threads, every unit submitted at t0."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.modes import register
from harness.modes.base import Execution, Mode


@register
class ThreadsMode(Mode):
    name = "threads"
    description = "ThreadPoolExecutor with --workers threads"
    simplicity = 2

    def run(self, ex: Execution) -> dict[str, Any]:
        workers = ex.options.workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harness-unit") as pool:
            # All units are due at submission: latency from intended start includes queueing.
            submitted = ex.now_ns()
            for future in [pool.submit(ex.run_unit, unit, submitted) for unit in ex.units]:
                future.result()  # run_unit records errors itself; this surfaces harness bugs
        return {"workers": workers}
