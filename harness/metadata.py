"""Run metadata: the machine, the software and the code that produced a result."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable

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
    """Commit and dirty flag of the checkout at ``path``, plus a hash of the uncommitted diff
    (two dirty checkouts at one commit are different code); empty when it is not one."""
    def git(*args: str) -> bytes:  # bytes: a diff need not be text in any encoding
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True,
                              timeout=5, check=True).stdout.strip()
    try:
        status = git("status", "--porcelain")
        info: dict[str, Any] = {"commit": git("rev-parse", "HEAD").decode(),
                                "dirty": bool(status)}
        if status:
            diff = git("diff", "HEAD", "--binary") + b"\0" + status
            info["diff_sha"] = hashlib.sha256(diff).hexdigest()[:12]
        return info
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


# ---------------------------------------------------------------------------- fingerprint
# What must match for two runs to be comparable, and why each field is in (or out):
# - scenario name, version (its file's hash), code_hash (the file plus the project modules
#   it imports, harness.sourcehash) and the resolved params: the workload itself;
# - machine: the hardware and OS a number depends on. Out: host (two identical CI machines
#   have different names; the hardware fields say what matters) and load_average (a
#   condition of the moment, different every run, not a configuration);
# - harness version, commit, dirty flag and the uncommitted diff's hash: the modes, the
#   cell driver and the sampler are harness code;
# - python and the packages that run or observe the work (KEY_PACKAGES). Out: rich, scipy,
#   matplotlib (they only draw and test results afterwards), pgserver (the server's own
#   version is recorded);
# - config sample_hz: the sampler's share of the machine. Out: timeout and memory budget
#   (limits: a cell that hits one is censored, and compare reads each run's own timeout),
#   repeat and warm-up (the statistics account for the sample sizes), out and progress;
# - services as they really were: PostgreSQL's server version, where it came from
#   (embedded, DATABASE_URL, container) and its key settings; the volume's kind (fuse or
#   local fallback) and settings; the supplier server's settings and aiohttp. Out: paths,
#   URLs, DSNs and reasons, which change every run without changing what is measured;
# - per mode: every recorded option (ModeOptions: a new field is covered without touching
#   this) and the label, plus the cluster size a dask cell reports (workers, threads, hosts).
KEY_PACKAGES = ("psutil", "pandas", "pyarrow", "psycopg", "aiohttp",
                "aiofiles", "dask", "distributed", "mfusepy", "SQLAlchemy")  # + python
MACHINE_FIELDS = ("cpu_model", "cores_logical", "cores_physical", "cpu_affinity",
                  "memory_bytes", "os")
CONFIG_FIELDS = ("sample_hz",)
SCENARIO_FIELDS = {"name": "scenario", "version": "scenario_version", "code_hash": "code_hash",
                   "params": "params"}  # recorded name -> fingerprint name
HARNESS_FIELDS = {"workflow-harness": "version", "commit": "commit", "dirty": "dirty",
                  "diff_sha": "diff_sha"}
NON_SEMANTIC_OPTIONS: frozenset[str] = frozenset()  # none today: every option changes a run
NON_SEMANTIC_SERVICE_FIELDS = frozenset({"path", "reason", "available", "base_url",
                                         "log_path", "dsn", "container", "source",
                                         "mountpoint", "backing", "data_dir"})
CLUSTER_FIELDS = ("threads", "hosts", "cluster_workers")


def _present(record: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    """The keys a record holds: a field an older record lacks stays absent, never None."""
    record = record or {}
    return {k: record[k] for k in keys if k in record}


def _service(name: str, record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in NON_SEMANTIC_SERVICE_FIELDS}
    if name == "postgres" and ("source" in record or "container" in record):
        source = str(record.get("source", ""))
        out["source"] = ("container" if "container" in record else
                         "embedded" if source.startswith("embedded") else source)
    if name == "nas" and ("kind" in record or "available" in record):
        out["kind"] = record.get("kind") or ("fuse" if record.get("available") else "local")
    return out


def _distinct(values: list[Any]) -> Any:
    unique = list(dict.fromkeys(values))
    return unique[0] if len(unique) == 1 else unique


def _modes(run: dict[str, Any], cells: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per mode: its options and label (from the plan, else the first cell that recorded
    them), and the cluster size its cells reported."""
    cells = list(cells)
    modes: dict[str, dict[str, Any]] = {}
    for entry in [*(run.get("plan") or []), *cells]:
        if "options" in entry and entry.get("mode") not in modes:
            options = {k: v for k, v in entry["options"].items()
                       if k not in NON_SEMANTIC_OPTIONS}
            modes[entry["mode"]] = {**options, **_present(entry, ("label",))}
    for mode, mine in modes.items():
        infos = [c.get("info") or {} for c in cells if c.get("mode") == mode]
        cluster = {k: _distinct([i[k] for i in infos if k in i]) for k in CLUSTER_FIELDS
                   if any(k in i for i in infos)}
        if cluster:
            mine["cluster"] = cluster
    return modes


def fingerprint(run: dict[str, Any], cells: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """What must match for two runs to be comparable (see the notes above for what is in
    and why). ``run`` is run.json; ``cells`` (cell.json records) add the options of runs
    whose plan did not record them and the cluster size dask cells report. A field the
    record does not hold is left out, so an older run folder still has a fingerprint."""
    scenario, meta = run.get("scenario") or {}, run.get("metadata") or {}
    fp: dict[str, Any] = {new: scenario[old] for old, new in SCENARIO_FIELDS.items()
                          if old in scenario}
    fp["machine"] = _present(meta, MACHINE_FIELDS)
    recorded = {**(meta.get("packages") or {}), **(meta.get("git") or {})}
    fp["harness"] = {new: recorded[old] for old, new in HARNESS_FIELDS.items()
                     if old in recorded}
    if "python" in meta:
        fp["python"] = f"{meta.get('python_implementation', '')} {meta['python']}".strip()
    fp["packages"] = _present(meta.get("packages"), KEY_PACKAGES)
    fp["config"] = _present(run.get("config"), CONFIG_FIELDS)
    fp["services"] = {name: _service(name, rec)
                      for name, rec in (run.get("services") or {}).items()
                      if isinstance(rec, dict)}
    fp["modes"] = _modes(run, cells)
    return fp
