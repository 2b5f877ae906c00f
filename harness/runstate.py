"""What a live run holds outside its results folder, and how it is let go when its harness dies.

Each run registers itself in ``.harness/runs/<run-id>.json``: the harness's pid (with its
start time, so a reused pid is not mistaken for it), the results folder, the scratch folder,
the prefix of its cell schemas, the embedded server it uses and the process group of the
cell running now. A small keeper process (``python -m harness.runstate KEEP ENTRY``, in a
session of its own) waits for the harness to exit; when the harness dies without removing
its entry (``kill -9``, OOM), the keeper :func:`reap` s the run: kills the cell's process
group, drops the run's schemas, removes its scratch folder, marks ``run.json`` as
``parent-died`` and stops the embedded server when no other live process uses it. Every
start also reaps the entries of runs whose harness is gone (a keeper killed too), and only
those: a live run's entry has a live owner.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

PARENT_DIED = "parent-died"
POLL_S = 1.0


@dataclass
class RunEntry:
    """One live run, as its keeper and the next start see it."""

    run_id: str
    owner_pid: int
    owner_started: float
    run_dir: str
    work_dir: str
    schema_prefix: str = ""
    dsn: str = ""                 # under .harness/ only: never copied to results
    pg_data_dir: str = ""         # the embedded server's data folder, when embedded
    cell_pgid: int | None = None  # the process group of the cell running now
    keeper_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def default_state_dir() -> Path:
    """Where embedded services, generated data and scratch live (the project's ``.harness/``,
    or ``HARNESS_STATE_DIR``)."""
    root = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("HARNESS_STATE_DIR", root / ".harness"))


def runs_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "runs"


def process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def owner_alive(entry: RunEntry) -> bool:
    """The run's harness still runs (the same process, not a reused pid)."""
    started = process_started(entry.owner_pid)
    if started is None or abs(started - entry.owner_started) > 1.0:
        return False
    try:
        return psutil.Process(entry.owner_pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Registration:
    """This process's entry for one run; ``close()`` removes it (a clean end)."""

    def __init__(self, state_dir: Path, entry: RunEntry):
        self.path = runs_dir(state_dir) / f"{entry.run_id}.json"
        self.entry = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.entry)), encoding="utf-8")
        os.replace(tmp, self.path)

    def update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.entry, key, value)
        self.save()

    def start_keeper(self) -> None:
        """A watcher in its own session: it outlives a kill -9 of this process."""
        from harness.services.children import child_env

        proc = subprocess.Popen([sys.executable, "-m", "harness.runstate", "keep", str(self.path)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                env=child_env())
        self.update(keeper_pid=proc.pid)
        self._keeper = proc

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:  # it notices the entry is gone within POLL_S; reap it now
            keeper.terminate()
            try:
                keeper.wait(5)
            except subprocess.TimeoutExpired:
                keeper.kill()


def load_entry(path: Path) -> RunEntry | None:
    try:
        return RunEntry(**json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def live_run_ids(state_dir: Path) -> set[str]:
    """Runs whose harness is alive now."""
    found = set()
    for path in runs_dir(state_dir).glob("*.json"):
        entry = load_entry(path)
        if entry is not None and owner_alive(entry):
            found.add(entry.run_id)
    return found


def reap_stale(state_dir: Path, say: Any = lambda text: None) -> list[str]:
    """Reap every registered run whose harness is gone; the ids reaped."""
    reaped = []
    for path in sorted(runs_dir(state_dir).glob("*.json")):
        entry = load_entry(path)
        if entry is None or owner_alive(entry):
            continue
        reap(entry)
        path.unlink(missing_ok=True)
        say(f"cleaned up after run {entry.run_id}, whose harness died")
        reaped.append(entry.run_id)
    return reaped


def reap(entry: RunEntry) -> None:
    """Release everything a dead run held; each step tolerates what is already gone."""
    if entry.cell_pgid:
        try:
            os.killpg(entry.cell_pgid, signal.SIGKILL)
        except OSError:
            pass
    _unmount_under(Path(entry.work_dir))
    if entry.dsn and entry.schema_prefix:
        drop_schemas(entry.dsn, entry.schema_prefix)
    shutil.rmtree(entry.work_dir, ignore_errors=True)
    _mark_parent_died(Path(entry.run_dir))
    if entry.pg_data_dir:
        from harness.services.postgres import release_embedded

        release_embedded(Path(entry.pg_data_dir), entry.owner_pid)


def _unmount_under(folder: Path) -> None:
    """rmtree must never walk into a live mount (it would delete the backing files)."""
    from harness.services.nas import force_unmount

    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    for line in mounts:
        parts = line.split()
        if len(parts) > 1:
            point = Path(parts[1].replace("\\040", " "))
            if point == folder or folder in point.parents:
                force_unmount(point)


def drop_schemas(dsn: str, prefix: str) -> None:
    """Drop the schemas whose names start with ``prefix`` (one run's cells)."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix])]
            for name in names:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                             .format(sql.Identifier(name)))
    except psycopg.Error:
        pass  # the server is gone: its schemas go at the next start that reaches it


def _mark_parent_died(run_dir: Path) -> None:
    from harness.records import write_json_atomic

    path = run_dir / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if run.get("status") == "running":
        run["status"] = PARENT_DIED
        run["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json_atomic(path, run)


def keep(entry_path: Path) -> int:
    """The keeper's loop: wait for the owner to exit; reap the run unless it ended cleanly."""
    entry = load_entry(entry_path)
    if entry is None:
        return 0
    try:
        pidfd = os.pidfd_open(entry.owner_pid)
    except (OSError, AttributeError):
        pidfd = None
    while Path(entry_path).exists() and owner_alive(entry):
        if pidfd is not None:
            select.select([pidfd], [], [], POLL_S)  # readable the instant the owner exits
        else:
            time.sleep(POLL_S / 5)
    entry = load_entry(entry_path)  # the latest: the cell running at the end
    if entry is None:
        return 0  # removed: the run ended cleanly
    reap(entry)
    Path(entry_path).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keep":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        sys.exit(keep(Path(sys.argv[2])))
    print("usage: python -m harness.runstate keep ENTRY.json", file=sys.stderr)
    sys.exit(2)
