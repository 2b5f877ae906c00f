"""serial: a plain loop, one unit after another, as a sequential pipeline runs."""

from __future__ import annotations

from typing import Any

from harness.modes import register
from harness.modes.base import Execution, Mode, ModeOptions


@register
class SerialMode(Mode):
    name = "serial"
    description = "a plain loop: one unit at a time"
    simplicity = 0
    default_workers = 1

    def concurrency(self, options: ModeOptions, n_units: int) -> int:
        return 1

    def run(self, ex: Execution) -> dict[str, Any]:
        # Each unit becomes due when the loop reaches it: no queueing in a loop.
        ex.run_in_order(ex.units)
        return {}
