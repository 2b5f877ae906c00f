"""How often the regression gate cries wolf, and how often it catches a real slowdown.

Given N runs of one configuration (oldest first), three measurements:

* **false alarms** of ``harness compare``: each run against the next (N - 1 pairs, as a
  nightly with ``--history 1`` would meet them): the share of pairs that exit 1;
* **detection** of a 1.5x slowdown: the same pairs with every candidate makespan scaled by
  ``SLOWDOWN`` (the runs' own noise, a known effect): the share that exit 1;
* the same two for ``nightly``'s default, each run against its ``K`` predecessors pooled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from harness.analysis.compare import compare_runs, pool_runs
from harness.commands.exitcodes import EXIT_REGRESSION
from harness.records import RunData, load_run

SLOWDOWN = 1.5


def slowed(run: RunData, factor: float = SLOWDOWN) -> RunData:
    """``run`` with every cell's makespan multiplied by ``factor``."""
    cells = copy.deepcopy(run.cells)
    for cell in cells:
        if cell.get("makespan_s") is not None:
            cell["makespan_s"] *= factor
    return RunData(run.path, run.run, cells, {}, {})


@dataclass
class GateRates:
    pairs: int
    false_alarms: int
    detected: int
    history_pairs: int
    history_false_alarms: int
    history_detected: int

    def line(self) -> str:
        def share(n: int, of: int) -> str:
            return f"{n}/{of} = {n / of:.0%}" if of else "-"

        return (f"compare (run vs next run, {self.pairs} pairs): false alarms "
                f"{share(self.false_alarms, self.pairs)}, 1.5x slowdowns detected "
                f"{share(self.detected, self.pairs)}; nightly (vs the last K runs pooled, "
                f"{self.history_pairs} runs): false alarms "
                f"{share(self.history_false_alarms, self.history_pairs)}, detected "
                f"{share(self.history_detected, self.history_pairs)}")


def flagged(baseline: RunData, candidate: RunData) -> bool:
    return compare_runs(baseline, candidate).exit_code == EXIT_REGRESSION


def gate_rates(paths: list[Path], k: int = 5) -> GateRates:
    runs = [load_run(p, details=False) for p in paths]
    runs = [r for r in runs if r.run.get("status") == "finished"]
    pairs = list(zip(runs, runs[1:]))
    history = [(pool_runs(runs[i - k:i]), runs[i]) for i in range(k, len(runs))]
    return GateRates(
        len(pairs), sum(flagged(a, b) for a, b in pairs),
        sum(flagged(a, slowed(b)) for a, b in pairs),
        len(history), sum(flagged(a, b) for a, b in history),
        sum(flagged(a, slowed(b)) for a, b in history))
