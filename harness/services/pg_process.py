"""The embedded server's processes, read from its data folder: who serves it now, who uses
it, and how to stop it when pgserver's own bookkeeping cannot (a server restarted from
outside has a postmaster pgserver never started; a harness killed by ``kill -9`` never ran
its clean-up)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil


def _running(proc: psutil.Process) -> bool:
    # A stopped postmaster can linger as a zombie until its (re)parent reaps it: that is not running.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_postgres(proc: psutil.Process) -> bool:
    try:
        cmdline = proc.cmdline()
        return proc.name() == "postgres" or bool(cmdline and cmdline[0].startswith("postgres"))
    except psutil.Error:
        return False


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    try:
        proc = psutil.Process(pid)
        return _running(proc) and _is_postgres(proc) and str(data_dir) in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _running_pid(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.Error:
        return False


def live_postmaster(data_dir: Path) -> int | None:
    """The pid of the postmaster serving ``data_dir`` now (from its pid file), else None."""
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _is_postmaster_of(pid, Path(data_dir)) else None


def _live_handles(data_dir: Path, exclude: int | None = None) -> list[int]:
    """Live processes other than ``exclude`` listed as users of the embedded server."""
    try:
        listed = json.loads((Path(data_dir) / ".handle_pids.json").read_text())
    except (OSError, ValueError):
        return []
    return [p for p in listed if isinstance(p, int) and p != exclude and _running_pid(p)]


def stop_postmaster(data_dir: Path, timeout: float = 15.0) -> None:
    """Stop the postmaster of ``data_dir`` (fast shutdown, then immediate, then SIGKILL)."""
    pid = live_postmaster(data_dir)
    if pid is None:
        return
    for sig, wait_s in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while _running_pid(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _running_pid(pid):
            return


def release_embedded(data_dir: Path, dead_pid: int) -> None:
    """A harness that used the embedded server died: drop its handle, and stop the server
    when no live process uses it any more (pgserver's own clean-up never ran)."""
    handles = Path(data_dir) / ".handle_pids.json"
    remaining = _live_handles(data_dir, exclude=dead_pid)
    try:
        if handles.exists():
            handles.write_text(json.dumps(remaining))
    except OSError:
        pass
    if not remaining:
        stop_postmaster(data_dir)


def _wait_gone(pids: tuple[int, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        while _running(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(proc):
            proc.kill()
