"""Run metadata: the machine, the software and the code that produced a result."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil

PACKAGES = ("workflow-harness", "psutil", "pandas", "pyarrow", "psycopg", "aiohttp",
            "aiofiles", "rich", "scipy", "matplotlib", "dask", "distributed", "pgserver",
            "mfusepy", "SQLAlchemy")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(path: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout at ``path``; empty when it is not one."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def collect(project_root: Path) -> dict[str, Any]:
    """Everything about this machine and environment that could change a measurement."""
    memory = psutil.virtual_memory()
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": memory.total,
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "git": git_commit(project_root),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def fingerprint(run: dict[str, Any]) -> dict[str, Any]:
    """What must match for two runs to be comparable: scenario code, parameters, machine."""
    meta = run.get("metadata", {})
    return {
        "scenario": run.get("scenario", {}).get("name"),
        "scenario_version": run.get("scenario", {}).get("version"),
        "params": run.get("scenario", {}).get("params"),
        "cpu_model": meta.get("cpu_model"),
        "cores_logical": meta.get("cores_logical"),
        "memory_bytes": meta.get("memory_bytes"),
    }
