"""The child side of a cell: ``python -m harness.cell SPEC.json`` executes one mode.

The parent starts this in a fresh process (its own process group), passing a pipe fd in
``HARNESS_CHANNEL_FD``. Messages sent: ``("start", t0_perf_ns, t0_wall_ns)``,
``("units", [record tuples])``, ``("end", makespan_ns, info)``, ``("fatal", text)``.
The parent's monotonic clock is the same as ours (CLOCK_MONOTONIC), so it can relate
its samples to our t0.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness.channel import ChannelWriter
from harness.discovery import load_path
from harness.modes import get_mode
from harness.modes.base import Execution, ModeOptions, Recorder
from harness.scenario import Context

PR_SET_PDEATHSIG = 1
UNITS_FILE = "units.pkl"  # the cell's units, pickled by the parent beside spec.json


def _context(spec: dict[str, Any]) -> Context:
    fields = dict(spec["ctx"])
    fields["data_dir"], fields["work_dir"] = Path(fields["data_dir"]), Path(fields["work_dir"])
    return Context(**fields)


def die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the observing parent dies (kill -9 of the harness):
    an orphaned cell would otherwise keep hammering services nobody measures."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: the parent's process-group kill still ends us on timeout
    expected = os.environ.get("HARNESS_PARENT_PID")
    if expected and os.getppid() != int(expected):
        os._exit(1)  # the parent died before prctl took effect


def cpu_times() -> tuple[float, float]:
    """User and system CPU seconds of this process plus its reaped children (pool workers
    are reaped when the pool shuts down, inside the measured window)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime


def run_cell(spec: dict[str, Any], spec_path: str, channel: ChannelWriter) -> int:
    """Load the scenario, execute its units in the requested mode, report through ``channel``."""
    scenario = load_path(spec["scenario_path"])
    ctx = _context(spec)
    options = ModeOptions(**spec["options"])
    mode = get_mode(spec["mode"])
    # The parent's list (scenario modules are loaded before unpickling: payloads may be
    # the scenario's own classes); units(ctx) is not computed a second time.
    units = pickle.loads((Path(spec_path).parent / UNITS_FILE).read_bytes())
    recorder = Recorder(lambda batch: channel.send(("units", batch)))

    def on_term(signum: int, frame: Any) -> None:
        # Timeout or memory kill from the parent: hand over what we have, then go.
        recorder.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    cpu0 = cpu_times()
    t0_wall = time.time_ns()
    t0 = time.perf_counter_ns()
    channel.send(("start", t0, t0_wall, len(units)))
    ex = Execution(scenario=scenario, ctx=ctx, units=units, options=options,
                   recorder=recorder, t0_ns=t0)
    info = mode.run(ex) or {}
    makespan = time.perf_counter_ns() - t0
    cpu1 = cpu_times()
    info["cpu_user_s"], info["cpu_sys_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    recorder.flush()
    close = scenario.function("close_worker")
    if close is not None:
        close(ctx)
    channel.send(("end", makespan, info))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    die_with_parent()
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    channel = ChannelWriter(int(os.environ["HARNESS_CHANNEL_FD"]))
    try:
        return run_cell(spec, argv[0], channel)
    except BaseException as exc:  # report, then die non-zero: the parent records a crash
        channel.send(("fatal", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        raise


if __name__ == "__main__":
    sys.exit(main())
