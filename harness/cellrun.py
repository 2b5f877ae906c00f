"""The parent side of one cell: spawn the child, observe it, enforce limits, record.

The child runs ``python -m harness.cell`` in its own process group. The parent reads its
messages (unit records, start/end) on a thread and writes them to ``units.jsonl`` as they
arrive, samples the child's process tree, kills the whole group on timeout or when the
memory budget is exceeded, and records whatever happened as the cell's outcome.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.blackbox import create_box, read_box
from harness.cell import UNITS_FILE
from harness.channel import read_messages
from harness.outcomes import STATUS, not_run_tuple
from harness.records import JsonLinesWriter, UnitsWriter
from harness.redact import scrub_file
from harness.services.children import log_tail
from harness.scenario import Unit

KILL_GRACE_S = 2.0
HEALTH_EVERY_S = 0.5
SERVICE_DOWN = "service-down"
_NOT_RUN_CLASS = {"timeout": "CellTimeout", "memory-exceeded": "CellMemoryExceeded",
                  "crashed": "CellCrashed", "interrupted": "CellInterrupted",
                  SERVICE_DOWN: "ServiceDown"}


@dataclass
class CellLimits:
    timeout_s: float
    max_memory_bytes: float | None
    sample_hz: float


@dataclass
class ChildOutcome:
    """What the parent learnt about one child process."""

    status: str = "ok"
    exit_code: int | None = None
    message: str = ""
    t0_ns: int | None = None
    t0_wall_ns: int = 0
    makespan_s: float | None = None  # the run phase: first submit to last completion
    setup_s: float | None = None
    teardown_s: float | None = None
    censored: bool = False
    process_wall_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    units_total: int = 0
    seen_units: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)


def sweep_group(pgid: int) -> None:
    """SIGKILL whatever is left of the cell's process group (a pool worker, a Dask
    nanny, multiprocessing's resource tracker): no process outlives its cell."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class CellProcess:
    """Runs one cell's child and observes it until it ends."""

    def __init__(self, cell_id: str, mode: str, cell_dir: Path, spec: dict[str, Any],
                 units: list[Unit], limits: CellLimits, service_pids: dict[str, list[int]],
                 on_progress: Callable[[int, int, int], None] = lambda done, errors, total: None,
                 side_samplers: list[Callable[[Callable[[str, int, dict[str, float]], None]], Any]]
                 | None = None, scratch_dir: Path | None = None,
                 health: Callable[[], str | None] | None = None,
                 on_group: Callable[[int | None], None] = lambda pgid: None):
        self.cell_id = cell_id
        self.mode = mode
        self.cell_dir = cell_dir
        self.spec = spec
        self.units = units
        self.limits = limits
        self.service_pids = service_pids
        self.on_progress = on_progress
        # Factories of extra observers (e.g. PostgreSQL's own statistics): each is called
        # with ``on_sample`` and returns an object with start() and stop().
        self.side_samplers = side_samplers or []
        # What the child needs but nobody may share (its spec holds the services'
        # credentials; units.pkl is a pickle): kept out of the results folder.
        self.scratch_dir = scratch_dir or cell_dir
        # Called about twice a second while the child runs: the name and reason of a
        # service that died (the cell is then cut short as service-down), else None.
        self.health = health
        # Told the cell's process group when it starts and None once it is swept (the
        # keeper kills that group if the harness dies meanwhile, never a reused one).
        self.on_group = on_group
        self.outcome = ChildOutcome()
        self._units = UnitsWriter(cell_dir / "units.jsonl")
        self._samples = JsonLinesWriter(cell_dir / "samples.jsonl")
        self._samples_lock = threading.Lock()
        self._ended_ns: int | None = None  # when the child was seen to exit or was killed
        self._over_memory = threading.Event()
        self._reader_cpu_s = 0.0
        self._sampler: Any = None  # the cell's Sampler, told by the reader when t0 came

    # ---- messages from the child ----

    def _read(self, fd: int) -> None:
        cpu0 = time.thread_time()
        try:
            self._read_messages(fd)
        finally:
            # What observing costs the parent per unit (decoding, writing units.jsonl).
            self._reader_cpu_s = time.thread_time() - cpu0

    def _read_messages(self, fd: int) -> None:
        out = self.outcome
        for message in read_messages(fd):
            kind = message[0]
            if kind == "units":
                self._add_units(message[1])
            elif kind == "start":
                out.t0_ns, out.t0_wall_ns, out.units_total = message[1], message[2], message[3]
                self._sampler.run_started()
                self.on_progress(0, 0, out.units_total)
            elif kind == "end":
                phases = message[1]
                out.makespan_s = phases["run_s"]
                out.setup_s, out.teardown_s = phases["setup_s"], phases["teardown_s"]
                out.info = {**phases["info"], "cpu_self_user_s": phases["cpu_self_user_s"],
                            "cpu_self_sys_s": phases["cpu_self_sys_s"]}
                if phases["broken"]:
                    # A broken pool or cluster: what it measured is not a result.
                    out.status, out.censored = "crashed", True
                    out.message = f"executor broken: {phases['broken']}"
            elif kind == "fatal":
                out.message = message[1]

    def _add_units(self, records: list[tuple[Any, ...]]) -> None:
        """Count and store records (called by one thread at a time: the file's writer)."""
        out = self.outcome
        seen, counts = out.seen_units, out.counts
        for record in records:
            seen.add(record[0])
            counts[record[STATUS]] = counts.get(record[STATUS], 0) + 1
        self._units.write_batch(records)
        self.on_progress(len(seen), counts.get("error", 0), out.units_total)

    def _recover_box(self, box_fd: int) -> None:
        """Keep the records the child logged but died before shipping (harness.blackbox)."""
        try:
            logged = read_box(box_fd)
        except OSError as exc:  # what the channel carried stands; say what may be missing
            self.outcome.message = "; ".join(
                x for x in (self.outcome.message, f"flight recorder unreadable: {exc}") if x)
            return
        lost = {r[0]: r for r in logged if r[0] not in self.outcome.seen_units}
        if lost:
            self._add_units(list(lost.values()))

    # ---- samples ----

    def on_sample(self, series: str, t_ns: int, values: dict[str, Any]) -> None:
        """Record one sample of ``series`` taken at ``t_ns`` (perf_counter clock); called
        from the sampler's and the side observers' threads."""
        row = {"series": series, "t_abs_ns": t_ns, **values}
        with self._samples_lock:
            self._samples.write_many([row])

    def _on_tick(self, values: dict[str, float]) -> None:
        budget = self.limits.max_memory_bytes
        if budget is not None and values.get("pss", values.get("rss", 0.0)) > budget:
            self._over_memory.set()

    # ---- the process ----

    def run(self) -> ChildOutcome:
        """Run the child to completion (or kill it); KeyboardInterrupt propagates after cleanup."""
        from harness.sampler import Sampler

        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        spec_path = self.scratch_dir / "spec.json"
        spec_path.write_text(json.dumps(self.spec, indent=2, default=str), encoding="utf-8")
        # The child executes exactly the units the parent accounts for, listed once here.
        try:
            payload = pickle.dumps(self.units, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the scenario's to fix: say what, and run the next cell
            self.abandon(f"units cannot be pickled ({type(exc).__name__}: {exc}): units "
                         "travel to the cell's process, so their payloads must be picklable")
            return self.outcome
        (self.scratch_dir / UNITS_FILE).write_bytes(payload)
        read_fd, write_fd = os.pipe()
        box_fd = create_box()
        env = dict(os.environ, HARNESS_CHANNEL_FD=str(write_fd), PYTHONUNBUFFERED="1",
                   HARNESS_PARENT_PID=str(os.getpid()), HARNESS_BOX_FD=str(box_fd))
        started_ns = time.perf_counter_ns()
        with open(self.cell_dir / "stdout.txt", "wb") as stdout, \
                open(self.cell_dir / "stderr.txt", "wb") as stderr:
            child = subprocess.Popen([sys.executable, "-m", "harness.cell", str(spec_path)],
                                     pass_fds=(write_fd, box_fd), env=env, stdout=stdout,
                                     stderr=stderr, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(write_fd)
        self.on_group(child.pid)
        reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True,
                                  name="harness-cell-reader")
        sampler = self._sampler = Sampler({"tree": [child.pid], **self.service_pids},
                                          self.limits.sample_hz, self.on_sample, self._on_tick)
        reader.start()  # after the sampler exists: the reader tells it when t0 came
        sampler.start()
        observers = [factory(self.on_sample) for factory in self.side_samplers]
        for observer in observers:
            observer.start()
        try:
            self._wait(child, started_ns)
        except KeyboardInterrupt:
            self._kill(child)
            self.outcome.status, self.outcome.censored = "interrupted", True
            raise
        finally:
            self.outcome.sampler = sampler.stop()
            for observer in observers:
                observer.stop()
            sweep_group(child.pid)  # first: no process of the cell holds the pipe open
            self.on_group(None)
            reader.join(timeout=10)
            self.outcome.sampler["reader_cpu_s"] = self._reader_cpu_s
            # A child that sent its end message had shipped every record before it; the
            # box is read only when it did not (and the reader is done: one file writer).
            if self.outcome.makespan_s is None and not reader.is_alive():
                self._recover_box(box_fd)
            os.close(box_fd)
            self._finish(child, started_ns)
        return self.outcome

    def _wait(self, child: subprocess.Popen, started_ns: int) -> None:
        deadline = started_ns + self.limits.timeout_s * 1e9
        next_check = time.monotonic() + HEALTH_EVERY_S
        while True:
            try:
                child.wait(timeout=0.05)
                self._ended_ns = time.perf_counter_ns()
                return
            except subprocess.TimeoutExpired:
                pass
            if self._over_memory.is_set():
                self._kill(child, grace=False)  # memory runaway: no grace period
                self.outcome.status = "memory-exceeded"
                self.outcome.message = (f"tree memory (PSS) exceeded --max-memory "
                                        f"{self.limits.max_memory_bytes / 2**20:.0f} MB")
                return
            if time.perf_counter_ns() > deadline:
                self._kill(child)
                self.outcome.status = "timeout"
                self.outcome.message = f"exceeded --timeout {self.limits.timeout_s:g}s"
                return
            if self.health is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + HEALTH_EVERY_S
                down = self.health()
                if down:  # no unit may spend its retry budget against a dead server
                    self._kill(child)
                    self.outcome.status, self.outcome.censored = SERVICE_DOWN, True
                    self.outcome.message = down
                    return

    def _kill(self, child: subprocess.Popen, grace: bool = True) -> None:
        """SIGTERM the group (the child flushes its records), then SIGKILL what is left.
        The cell ends now, not after the grace period: that is what its times count to."""
        self._ended_ns = time.perf_counter_ns()
        sig = signal.SIGTERM if grace else signal.SIGKILL
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=KILL_GRACE_S if grace else 5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(child.pid, signal.SIGKILL)  # pool workers too: same process group
        except ProcessLookupError:
            pass
        child.wait()

    def _finish(self, child: subprocess.Popen, started_ns: int) -> None:
        out = self.outcome
        ended = self._ended_ns or time.perf_counter_ns()
        out.process_wall_s = (ended - started_ns) / 1e9
        out.exit_code = child.returncode
        if out.status == "ok" and (child.returncode != 0 or out.makespan_s is None):
            out.status = "crashed"
            if child.returncode is not None and child.returncode < 0:
                detail = f"killed by signal {-child.returncode}"
            else:
                detail = f"exit code {child.returncode}"
            tail = log_tail(self.cell_dir / "stderr.txt", 3)[:600]
            out.message = "; ".join(x for x in (out.message or detail, tail) if x)
        if out.makespan_s is None and out.t0_ns is not None:
            # Killed mid-run: what it ran for until it ended is a lower bound on its makespan.
            out.makespan_s = (ended - out.t0_ns) / 1e9
            out.censored = True
        self._close()

    def abandon(self, message: str, status: str = "crashed") -> None:
        """The cell could not start (its setup failed, a service is down): record that
        instead of running it. It never started: it has no makespan, not even a bound."""
        self.outcome.status, self.outcome.message = status, message
        self.outcome.censored = True
        self._close()

    def _close(self) -> None:
        """Record every unit the child never reported as not-run, then close the files."""
        reason = _NOT_RUN_CLASS.get(self.outcome.status, "NotRun")
        missing = [u for u in self.units if u.id not in self.outcome.seen_units]
        self._units.write_batch([not_run_tuple(u, f"cell ended: {self.outcome.status}", reason)
                                 for u in missing])
        self.outcome.counts["not-run"] = self.outcome.counts.get("not-run", 0) + len(missing)
        self._units.close()
        with self._samples_lock:
            self._samples.close()
        for name in ("stderr.txt", "stdout.txt"):  # a traceback may quote a DSN
            scrub_file(self.cell_dir / name)
        if self.scratch_dir != self.cell_dir:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)
