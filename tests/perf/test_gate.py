"""The regression gate's false-alarm and detection rates, measured on real runs (make perf).

``RUNS`` same-config small calibrate runs (serial, threads, asyncio; 3 repeats each), one
after another as nightly would meet them. False alarms: ``harness compare`` of each run with
the next (``RUNS - 1`` pairs) exits 1. Detection: the same pairs with the candidate's
makespans slowed 1.5x (its own noise kept). And the same for nightly's default baseline, the
last ``K`` runs pooled. Targets (issue 9): at most 5% false alarms, at least 90% detected.
"""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from harness.config import RunConfig
from harness.runner import Runner
from tests.perf.gate import gate_rates

RUNS = 24
FALSE_ALARMS_TARGET = 0.05
DETECTION_TARGET = 0.90


def _runs(out) -> list[Any]:
    paths = []
    for _ in range(RUNS):
        config = RunConfig(scenario="calibrate", modes=["serial", "threads", "asyncio"],
                           repeat=3, warmup=False, params={"units": "40", "cost_ms": "5"},
                           out=out, progress=False)
        paths.append(Runner(config, Console(quiet=True)).run())
    return paths


@pytest.mark.perf
def test_regression_gate_rates(benchmark, tmp_path):
    paths = _runs(tmp_path)
    rates = benchmark.pedantic(lambda: gate_rates(paths), rounds=1, iterations=1)
    print(f"\nregression gate over {RUNS} same-config calibrate runs: {rates.line()}")
    benchmark.extra_info.update(vars(rates))
    assert rates.false_alarms / rates.pairs <= FALSE_ALARMS_TARGET
    assert rates.detected / rates.pairs >= DETECTION_TARGET
    assert rates.history_false_alarms / rates.history_pairs <= FALSE_ALARMS_TARGET
    assert rates.history_detected / rates.history_pairs >= DETECTION_TARGET
