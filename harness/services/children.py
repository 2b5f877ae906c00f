"""What the harness does alike for every process it starts: a service daemon or a cell."""

from __future__ import annotations

import os
from pathlib import Path


def child_env() -> dict[str, str]:
    """Environment for a service subprocess: this package importable even if not installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pid``; a group that is gone (or not ours) is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal still counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` of a log as one line (for one-line error messages)."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
