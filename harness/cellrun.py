"""The parent side of one cell: spawn the child, observe it, enforce limits, record.

The child runs ``python -m harness.cell`` in its own process group. The parent reads its
messages (unit records, start/end) on a thread and writes them to ``units.jsonl`` as they
arrive, samples the child's process tree, kills the whole group on timeout or when the
memory budget is exceeded, and records whatever happened as the cell's outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.channel import read_messages
from harness.records import UNIT_FIELDS, JsonLinesWriter

KILL_GRACE_S = 2.0
_UNIT_STATUS_AFTER = {"timeout": "CellTimeout", "memory-exceeded": "CellMemoryExceeded",
                      "crashed": "CellCrashed", "interrupted": "CellInterrupted"}


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
    makespan_s: float | None = None
    censored: bool = False
    process_wall_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    units_total: int = 0
    seen_units: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    peak_rss: float = 0.0
    sampler: dict[str, Any] = field(default_factory=dict)


class CellProcess:
    """Runs one cell's child and observes it until it ends."""

    def __init__(self, cell_id: str, mode: str, cell_dir: Path, spec: dict[str, Any],
                 limits: CellLimits, service_pids: dict[str, list[int]],
                 on_progress: Callable[[int, int, int], None] = lambda done, errors, total: None,
                 side_samplers: list[Callable[[Callable[[str, int, dict[str, float]], None]], Any]]
                 | None = None):
        self.cell_id = cell_id
        self.mode = mode
        self.cell_dir = cell_dir
        self.spec = spec
        self.limits = limits
        self.service_pids = service_pids
        self.on_progress = on_progress
        # Factories of extra observers (e.g. PostgreSQL's own statistics): each is called
        # with ``on_sample`` and returns an object with start() and stop().
        self.side_samplers = side_samplers or []
        self.outcome = ChildOutcome()
        self._units = JsonLinesWriter(cell_dir / "units.jsonl")
        self._samples = JsonLinesWriter(cell_dir / "samples.jsonl")
        self._lock = threading.Lock()
        self._over_memory = threading.Event()

    # ---- messages from the child ----

    def _read(self, fd: int) -> None:
        out = self.outcome
        for message in read_messages(fd):
            kind = message[0]
            if kind == "units":
                rows = []
                for values in message[1]:
                    row = dict(zip(UNIT_FIELDS, values))
                    row["cell"], row["mode"] = self.cell_id, self.mode
                    rows.append(row)
                    out.seen_units.add(row["unit"])
                    out.counts[row["status"]] = out.counts.get(row["status"], 0) + 1
                with self._lock:
                    self._units.write_many(rows)
                self.on_progress(len(out.seen_units), out.counts.get("error", 0), out.units_total)
            elif kind == "start":
                out.t0_ns, out.t0_wall_ns, out.units_total = message[1], message[2], message[3]
                self.on_progress(0, 0, out.units_total)
            elif kind == "end":
                out.makespan_s = message[1] / 1e9
                out.info = message[2]
            elif kind == "fatal":
                out.message = message[1]

    # ---- samples ----

    def on_sample(self, series: str, t_ns: int, values: dict[str, Any]) -> None:
        """Record one sample of ``series`` taken at ``t_ns`` (perf_counter clock)."""
        self._on_sample(series, t_ns, values)

    def _on_sample(self, series: str, t_ns: int, values: dict[str, float]) -> None:
        row = {"series": series, "t_abs_ns": t_ns, **values}
        with self._lock:
            self._samples.write_many([row])

    def _on_tick(self, values: dict[str, float]) -> None:
        self.outcome.peak_rss = max(self.outcome.peak_rss, values.get("rss", 0.0))
        budget = self.limits.max_memory_bytes
        if budget is not None and values.get("rss", 0.0) > budget:
            self._over_memory.set()

    # ---- the process ----

    def run(self) -> ChildOutcome:
        """Run the child to completion (or kill it); KeyboardInterrupt propagates after cleanup."""
        from harness.sampler import Sampler

        spec_path = self.cell_dir / "spec.json"
        spec_path.write_text(json.dumps(self.spec, indent=2, default=str), encoding="utf-8")
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, HARNESS_CHANNEL_FD=str(write_fd), PYTHONUNBUFFERED="1",
                   HARNESS_PARENT_PID=str(os.getpid()))
        started = time.perf_counter()
        with open(self.cell_dir / "stdout.txt", "wb") as stdout, \
                open(self.cell_dir / "stderr.txt", "wb") as stderr:
            child = subprocess.Popen([sys.executable, "-m", "harness.cell", str(spec_path)],
                                     pass_fds=(write_fd,), env=env, stdout=stdout,
                                     stderr=stderr, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(write_fd)
        reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True,
                                  name="harness-cell-reader")
        reader.start()
        sampler = Sampler({"tree": [child.pid], **self.service_pids}, self.limits.sample_hz,
                          self._on_sample, self._on_tick).start()
        observers = [factory(self.on_sample) for factory in self.side_samplers]
        for observer in observers:
            observer.start()
        try:
            self._wait(child, started)
        except KeyboardInterrupt:
            self._kill(child)
            self.outcome.status = "interrupted"
            raise
        finally:
            self.outcome.sampler = sampler.stop()
            for observer in observers:
                observer.stop()
            reader.join(timeout=10)
            self.outcome.process_wall_s = time.perf_counter() - started
            self._finish(child)
        return self.outcome

    def _wait(self, child: subprocess.Popen, started: float) -> None:
        deadline = started + self.limits.timeout_s
        while True:
            try:
                child.wait(timeout=0.05)
                return
            except subprocess.TimeoutExpired:
                pass
            if self._over_memory.is_set():
                self._kill(child, grace=False)  # memory runaway: no grace period
                self.outcome.status = "memory-exceeded"
                self.outcome.message = (f"tree RSS exceeded --max-memory "
                                        f"{self.limits.max_memory_bytes / 2**20:.0f} MB")
                return
            if time.perf_counter() > deadline:
                self._kill(child)
                self.outcome.status = "timeout"
                self.outcome.message = f"exceeded --timeout {self.limits.timeout_s:g}s"
                return

    def _kill(self, child: subprocess.Popen, grace: bool = True) -> None:
        """SIGTERM the group (the child flushes its records), then SIGKILL what is left."""
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

    def _finish(self, child: subprocess.Popen) -> None:
        out = self.outcome
        out.exit_code = child.returncode
        if out.status == "ok" and (child.returncode != 0 or out.makespan_s is None):
            out.status = "crashed"
            if child.returncode is not None and child.returncode < 0:
                detail = f"killed by signal {-child.returncode}"
            else:
                detail = f"exit code {child.returncode}"
            tail = _tail(self.cell_dir / "stderr.txt")
            out.message = "; ".join(x for x in (out.message or detail, tail) if x)
        if out.makespan_s is None and out.t0_ns is not None:
            # Killed mid-run: what it ran for is a lower bound on its makespan.
            end = time.perf_counter_ns()
            out.makespan_s = (end - out.t0_ns) / 1e9
            out.censored = True
        with self._lock:
            self._units.close()
            self._samples.close()

    def abandon(self, message: str) -> None:
        """The cell could not start (its setup failed): record that instead of running it."""
        self.outcome.status, self.outcome.message = "crashed", message
        with self._lock:
            self._units.close()
            self._samples.close()

    def record_unfinished(self, all_units: list[tuple[str, str]]) -> int:
        """Write a not-run record for every unit the child never reported; return how many."""
        reason = _UNIT_STATUS_AFTER.get(self.outcome.status, "NotRun")
        missing = [(uid, group) for uid, group in all_units if uid not in self.outcome.seen_units]
        if missing:
            writer = JsonLinesWriter(self.cell_dir / "units.jsonl")
            writer.write_many([
                {"unit": uid, "group": group, "worker": "", "attempts": 0, "intended_ns": 0,
                 "start_ns": -1, "end_ns": -1, "status": "not-run", "error_class": reason,
                 "error": f"cell ended: {self.outcome.status}", "rows": 0, "bytes": 0,
                 "retries": {}, "cell": self.cell_id, "mode": self.mode}
                for uid, group in missing])
            writer.close()
            self.outcome.counts["not-run"] = self.outcome.counts.get("not-run", 0) + len(missing)
        return len(missing)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:600]
