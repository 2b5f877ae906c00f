"""The child side of a cell: ``python -m harness.cell SPEC.json`` executes one mode.

The parent starts this in a fresh process (its own process group), passing a pipe fd in
``HARNESS_CHANNEL_FD``. The driver (:mod:`harness.driver`) runs the units; this module
wires it to the mode's executor and policy and reports through the channel:
``("start", t0_perf_ns, t0_wall_ns, n_units)`` after set-up, ``("units", [records])``,
``("end", phases)`` and ``("fatal", text, traceback)``. The parent's monotonic clock is
the same as ours (CLOCK_MONOTONIC), so it can relate its samples to our t0.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from harness.blackbox import BlackBox
from harness.channel import ChannelWriter
from harness.discovery import LoadedScenario, load_path
from harness.driver import Driver, Recorder, wall_clock_of
from harness.executors import ExecutorSetup
from harness.modes import ModeOptions, ModeSpec
from harness.scenario import Context, Unit

PR_SET_PDEATHSIG = 1
TERM_FLUSH_S = 1.5  # the parent's grace period after SIGTERM is 2 s
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


def end_group(code: int) -> None:
    """Exit, SIGKILLing every process of the cell's group first: pool workers, the
    multiprocessing resource tracker, Dask nannies and their workers (none of them has
    this process as the parent PDEATHSIG watches, or they would outlive an orphaned cell)."""
    try:
        if os.getpgid(0) == os.getpid():  # we lead the cell's own group (start_new_session)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.killpg(os.getpid(), signal.SIGKILL)
    except OSError:
        pass
    os._exit(code)


def cpu_times() -> tuple[float, float]:
    """User and system CPU seconds of this process and of the children it reaped (a
    command a unit ran and waited for), as the parent's sampler counts a process."""
    me, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return me.ru_utime + children.ru_utime, me.ru_stime + children.ru_stime


def build_driver(scenario: LoadedScenario, ctx: Context, mode: ModeSpec,
                 options: ModeOptions, units: list[Unit], recorder: Recorder) -> Driver:
    """The mode's executor and policy under one driver."""
    setup = ExecutorSetup(scenario, ctx, options.workers, options.chunksize,
                          options.dask_address, stop_on_error=options.on_error == "stop")
    executor = mode.executor_class(setup)
    policy = mode.build_policy(executor.workers, options)
    schedule = scenario.function("schedule")
    return Driver(executor, policy, recorder, stop_on_error=setup.stop_on_error,
                  schedule_s=list(schedule(ctx, units)) if schedule is not None else None)


def _open_box() -> BlackBox | None:
    """The flight recorder the parent handed over (``HARNESS_BOX_FD``), if it can be
    mapped: without it the recorder ships each slow unit's record at once instead."""
    fd = os.environ.get("HARNESS_BOX_FD")
    try:
        box = BlackBox(int(fd)) if fd else None
    except (OSError, ValueError):
        return None
    os.close(int(fd))  # the mapping holds the file: a forked pool worker need not
    return box


def run_cell(spec: dict[str, Any], spec_path: str, channel: ChannelWriter) -> int:
    """Load the scenario, drive its units in the requested mode, report through ``channel``."""
    scenario = load_path(spec["scenario_path"])
    ctx = _context(spec)
    # The parent's list (scenario modules are loaded before unpickling: payloads may be
    # the scenario's own classes); units(ctx) is not computed a second time.
    units = pickle.loads((Path(spec_path).parent / UNITS_FILE).read_bytes())
    recorder = Recorder(lambda batch: channel.send(("units", batch)), blackbox=_open_box())

    def on_term(signum: int, frame: Any) -> None:
        # Timeout or memory kill from the parent, or the parent died (PDEATHSIG): hand over
        # what we have, then take the whole cell with us. The flush runs on another thread:
        # this one may hold the recorder's lock (a deadlock otherwise).
        def flush() -> None:
            try:
                recorder.flush()
            except OSError:
                pass  # the parent is gone: nobody reads the channel any more

        flusher = threading.Thread(target=flush, daemon=True)
        flusher.start()
        flusher.join(TERM_FLUSH_S)
        end_group(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    driver = build_driver(scenario, ctx, ModeSpec.parse(spec["mode"]),
                          ModeOptions(**spec["options"]), units, recorder)
    cpu: list[tuple[float, float]] = []

    def on_t0(t0: int) -> None:
        cpu.append(cpu_times())
        channel.send(("start", t0, wall_clock_of(t0), len(units)))

    # This process's CPU and its reaped children's over the run phase (exact; the
    # parent's samples cover the tree).
    result = driver.run(units, on_t0, on_run_end=lambda: cpu.append(cpu_times()))
    recorder.close()
    close = scenario.function("close_worker")
    if close is not None:
        close(ctx)
    channel.send(("end", {"setup_s": result.setup_ns / 1e9, "run_s": result.run_ns / 1e9,
                          "teardown_s": result.teardown_ns / 1e9, "broken": result.broken,
                          "cpu_self_user_s": cpu[1][0] - cpu[0][0],
                          "cpu_self_sys_s": cpu[1][1] - cpu[0][1], "info": result.info}))
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
