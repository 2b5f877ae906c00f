"""Where a serial cell's time per slow unit goes. Not a pytest module: run it by hand.

    python tests/perf/slow_unit_gaps.py        # 3 serial cells of 240 x 10 ms sleeps

For each cell, beside a bare loop of the same sleeps run just before it: the median sleep,
the cell's median service time, the median gap between one unit's end and the next one's
start (the harness's own work: the record, logging it to the cell's flight recorder, the
policy), and the makespan difference per unit (what ``make perf``'s slow-unit test
asserts). Then the cost of shipping one record (pickle + pipe write) right after a 10 ms
sleep and in a hot loop: on a VM whose vCPU idles during the sleep the first is 10-30
times the second, which is why the serial loop logs to mapped memory instead
(``harness.blackbox``) and leaves the shipping to the recorder's flusher.
"""

from __future__ import annotations

import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.config import RunConfig  # noqa: E402
from harness.records import load_run  # noqa: E402
from harness.runner import Runner  # noqa: E402
from tests.perf.test_overhead import SCENARIO  # noqa: E402

UNITS, SLEEP_S = 240, 0.010
RECORD = ("u000001", "", "1:1", 1, 0, 1, 2, "ok", None, None, 0, 0, {})


def us(values: list[float]) -> str:
    return f"{statistics.median(values) / 1e3:7.1f} us"


def one_cell() -> None:
    sleeps = []
    loop_start = time.perf_counter_ns()
    for _ in range(UNITS):
        start = time.perf_counter_ns()
        time.sleep(SLEEP_S)
        sleeps.append(time.perf_counter_ns() - start)
    bare_s = (time.perf_counter_ns() - loop_start) / 1e9  # the whole loop, as make perf times it
    params = {"kind": "sleep", "cost_us": str(SLEEP_S * 1e6), "units": str(UNITS)}
    config = RunConfig(scenario=str(SCENARIO), modes=["serial"], repeat=1, warmup=False,
                       params=params, out=Path(tempfile.mkdtemp()), progress=False)
    run = load_run(Runner(config, Console(quiet=True)).run())
    (cell,) = run.cells
    units = sorted(run.units[cell["cell_id"]], key=lambda u: u["start_ns"])
    service = [u["end_ns"] - u["start_ns"] for u in units]
    gaps = [b["start_ns"] - a["end_ns"] for a, b in zip(units, units[1:])]
    added_ms = (cell["makespan_s"] - bare_s) / UNITS * 1e3
    print(f"bare sleep {us(sleeps)}  cell service {us(service)}  gap {us(gaps)}  "
          f"added {added_ms:.3f} ms per unit")


def ship_cost(sleep_s: float) -> str:
    read, write = os.pipe()
    if os.fork() == 0:  # a reader, as the parent is
        os.close(write)
        while os.read(read, 1 << 20):
            pass
        os._exit(0)
    os.close(read)
    costs = []
    for _ in range(300):
        if sleep_s:
            time.sleep(sleep_s)
        start = time.perf_counter_ns()
        os.write(write, pickle.dumps(("units", [RECORD]), protocol=pickle.HIGHEST_PROTOCOL))
        costs.append(time.perf_counter_ns() - start)
    os.close(write)
    os.wait()
    return us(costs)


if __name__ == "__main__":
    for _ in range(3):
        one_cell()
    print(f"ship one record (pickle + pipe write): after a 10 ms sleep {ship_cost(SLEEP_S)}, "
          f"hot {ship_cost(0)}")
