"""Drive a real ``harness run`` in a subprocess, inject a fault, and account for the aftermath.

Every fault test runs the harness as a user would (``python -m harness run``), with its
own state folder under the project's ``.harness/faults`` (pgserver needs it inside the
project), waits on a condition (never a fixed time) to inject its fault, and then checks
what the issue asks: the exit code, the finished records intact, the faulted cell's outcome
and censoring, and nothing left behind: no process of the run's tree, no server, no mount,
no schema, no scratch folder, no registration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from harness.records import read_json_lines

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("fault_scenario.py")
STATE = ROOT / ".harness" / "faults"
ROWS: list[dict[str, Any]] = []  # the `make faults` table, one row per fault


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """``proc``'s process tree now ([] while a process vanishes mid-scan)."""
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


class FaultRun:
    """One harness run in a subprocess, its process tree watched from the start."""

    def __init__(self, tmp_path: Path, modes: str, params: dict[str, Any],
                 *extra: str, env: dict[str, str] | None = None, report: bool = False):
        self.out = tmp_path / "results"
        self.log = tmp_path / "harness.log"
        cmd = [sys.executable, "-m", "harness", "run", str(SCENARIO), "--modes", modes,
               "--repeat", "1", "--no-warmup", "--out", str(self.out), "--no-progress",
               *([] if report else ["--no-report"]), "--timeout", "120",
               *[f"--param={k}={v}" for k, v in params.items()], *extra]
        environ = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_STATE_DIR": str(STATE),
                   **(env or {})}
        if not (env or {}).get("DATABASE_URL"):
            environ.pop("DATABASE_URL", None)
        STATE.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=environ,
                                         cwd=ROOT)
        self.seen: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        self.rc: int | None = None

    # ---- watching ----

    def _watch(self) -> None:
        """Remember every process of the run's tree (the harness, its cells, their pools,
        its services, its keeper) while it runs: all must be gone at the end."""
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                for child in root.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            except psutil.Error:
                pass
            for proc in psutil.process_iter():
                # The keeper and the services run in sessions of their own; the postmaster
                # is forked by pg_ctl: name them by what they serve.
                line = cmdline(proc)
                if str(STATE) in line or "harness.runstate keep" in line:
                    self.seen.setdefault(proc.pid, proc)
            if self.proc.poll() is not None:
                return
            self._stop.wait(0.1)

    def processes(self, needle: str) -> list[psutil.Process]:
        """Live processes of the run whose command line contains ``needle``."""
        return [p for p in list(self.seen.values())
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and needle in cmdline(p)]

    @property
    def run_dir(self) -> Path | None:
        found = sorted(self.out.glob("faults/*/run.json"))
        return found[0].parent if found else None

    def cell_dir(self, index: int) -> Path | None:
        run = self.run_dir
        found = sorted(run.glob(f"cells/{index:03d}-*")) if run else []
        return found[0] if found else None

    def records(self, index: int) -> dict[str, str]:
        """unit -> status of the records cell ``index`` has streamed so far."""
        cell = self.cell_dir(index)
        if cell is None:
            return {}
        return {row[0]: row[7] for line in read_json_lines(cell / "units.jsonl")
                for row in line if row[7] in ("ok", "error")}

    def wait_running(self, index: int, records: int = 5) -> dict[str, str]:
        """Wait until cell ``index`` has streamed ``records`` finished units."""
        return wait_for(lambda: len(self.records(index)) >= records and self.records(index),
                        90, f"cell {index} to stream {records} records")

    def wait(self, timeout: float = 180) -> int:
        self.rc = self.proc.wait(timeout)
        self._stop.set()
        self._watcher.join(5)
        return self.rc

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    # ---- the aftermath ----

    def run_json(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "run.json").read_text())

    def leftovers(self, schemas: bool = False) -> list[str]:
        """Everything the run left behind (waiting for what dies asynchronously)."""
        from harness.services.postgres import live_postmaster

        left: list[str] = []
        try:
            wait_for(lambda: not self._alive(), 20, "the run's processes to exit")
        except AssertionError:
            left += [f"process {p.pid} ({cmdline(p)[:80]})" for p in self._alive()]
        try:
            wait_for(lambda: live_postmaster(STATE / "pg") is None, 20, "postgres to stop")
        except AssertionError:
            left.append("postgres server")
        mounts = Path("/proc/mounts").read_text()
        left += [f"mount {line.split()[1]}" for line in mounts.splitlines()
                 if str(STATE) in line]
        run_id = self.run_dir.name if self.run_dir else "?"
        if (STATE / "work" / "faults" / run_id).exists():
            left.append("scratch folder")
        if (STATE / "runs" / f"{run_id}.json").exists():
            left.append("run registration")
        left += [f"leftover {p.name}" for p in (STATE / "mnt").glob(f"*{run_id}*")]
        if schemas:
            left += [f"schema {name}" for name in self._schemas(run_id)]
        return left

    def _alive(self) -> list[psutil.Process]:
        alive = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                pass
        return alive

    def _schemas(self, run_id: str) -> list[str]:
        """The run's cell schemas still in the embedded database (started just to look)."""
        from harness.services.postgres import PostgresService

        import psycopg

        service = PostgresService(database_url="", data_dir=STATE / "pg")
        info = service.start()
        try:
            with psycopg.connect(info.dsn, autocommit=True) as conn:
                suffix = run_id.rsplit("-", 1)[-1]
                return [r[0] for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                    [f"faults_{suffix}_%"])]
        finally:
            service.stop()


def lost(before: dict[str, str], after: list[dict[str, Any]]) -> int:
    """Finished records seen during the run that are missing or changed at the end."""
    final = {u["unit"]: u["status"] for u in after}
    return sum(1 for unit, status in before.items() if final.get(unit) != status)


def record(fault: str, outcome: str, records_lost: int, left: list[str]) -> None:
    ROWS.append({"fault": fault, "outcome": outcome, "lost": records_lost, "left": left})
