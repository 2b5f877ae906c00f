"""dask: the same units on a Dask cluster (a LocalCluster by default, or ``--dask-address``).

A LocalCluster has ``--workers`` worker processes of one thread each, listening on
127.0.0.1 only, with no dashboard (no fixed port to collide on). Starting it is the set-up
phase and closing it the tear-down phase: both are recorded and shown, neither is in the
makespan. With ``--dask-address`` the harness connects to an existing scheduler and never
closes that cluster; the cluster's own CPU and memory are then gathered by a sampler that
runs on every worker (:mod:`harness.executors.dask_usage`), since those processes are
outside the cell's process tree.

Units travel in chunks that keep per-unit timing (:mod:`harness.executors.chunks`). Every
task is submitted with ``pure=False``: Dask's default (``pure=True``) keys a task by its
arguments and computes identical calls once, which would fake a speedup. Workers load the
scenario file by path, once per process; the nanny starts workers with spawn, so
everything shipped imports from real modules.

A worker that dies is restarted by its nanny and Dask retries its tasks; a chunk that
keeps killing workers fails with ``KilledWorker``, which breaks the cell (a crashed,
censored cell, never a result).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
import threading
import time
from typing import Any, Callable

from harness.discovery import LoadedScenario, forget, load_path
from harness.executors import register
from harness.executors.base import Executor, ExecutorBroken
from harness.executors.chunks import ChunkFeeder
from harness.outcomes import run_chunk, worker_name
from harness.scenario import Context, ScenarioError, Unit

INSTALL_HINT = "pip install 'dask[distributed]'"
CONNECT_TIMEOUT_S = 30

_loaded: dict[str, LoadedScenario] = {}
_load_lock = threading.Lock()
_contexts: dict[tuple[str, str], Context] = {}


def _scenario(path: str) -> LoadedScenario:
    """The scenario module on a worker, loaded once per process (threads wait for it)."""
    with _load_lock:
        if path not in _loaded:
            _loaded[path] = load_path(path)
        return _loaded[path]


def _local_t0(clock: tuple[int, int, str]) -> int:
    """The cell's t0 on this process's ``perf_counter_ns`` clock: exact on the cell's
    host (one monotonic clock), through the wall clock elsewhere (as good as NTP)."""
    t0_perf, t0_wall, host = clock
    if host == socket.gethostname():
        return t0_perf
    return time.perf_counter_ns() - (time.time_ns() - t0_wall)


def _run_chunk(path: str, ctx: Context, clock: tuple[int, int, str], units: list[Unit],
               stop_on_error: bool = False) -> list[tuple[Any, ...]]:
    """Run one chunk on a Dask worker. The first copy of a cell's context seen by this
    process is kept, so its per-thread resources (connections) live across chunks."""
    ctx = _contexts.setdefault((ctx.run_id, ctx.cell_id), ctx)
    return run_chunk(_scenario(path).module.work, units, ctx, _local_t0(clock), worker_name(),
                     stop_on_error=stop_on_error)


def _end_cell(path: str, run_id: str, cell_id: str) -> bool:
    """Tear-down on every worker: forget the cell's context and close what the scenario
    opened for it (``close_worker``). A user's workers outlive the cell: without this,
    each cell would leave its database connections open there."""
    ctx = _contexts.pop((run_id, cell_id), None)
    close = _scenario(path).function("close_worker")
    if ctx is not None and close is not None:
        close(ctx)
    return ctx is not None


def _preload(path: str, version: str = "") -> bool:
    """Set-up on every worker: load the scenario (and its imports) before the run. A user's
    workers outlive cells: a file changed since this worker loaded it is loaded again, and
    a copy that still differs from the cell's (another host's file) is an error, never a
    result of other code."""
    with _load_lock:
        loaded = _loaded.get(path)
        if loaded is not None and version and loaded.version != version:
            del _loaded[path]
            forget(path)
    loaded = _scenario(path)
    if version and loaded.version != version:
        raise ScenarioError(f"the Dask worker on {socket.gethostname()} sees another copy of "
                            f"{path} (version {loaded.version}; the cell's is {version}): "
                            "give the workers the same file")
    return True


class _BreakOnKilledWorker:
    """A Dask future whose failure surfaces as :class:`ExecutorBroken`: a chunk's units
    catch their own exceptions (``run_timed``), so a chunk that fails is the cluster's
    doing (a killed worker, a lost connection, a cancelled task)."""

    def __init__(self, future: Any):
        self._future = future

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def result(self) -> Any:
        try:
            return self._future.result()
        except BaseException as exc:
            raise ExecutorBroken(f"{type(exc).__name__}: {exc}") from exc


@register
class DaskExecutor(Executor):
    name = "dask"
    description = "Dask distributed: LocalCluster of --workers processes (or --dask-address)"
    simplicity = 5
    default_workers = os.cpu_count() or 2

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("distributed") is None:
            return False, INSTALL_HINT
        return True, ""

    @classmethod
    def describe(cls, scenario: LoadedScenario, options: Any) -> str:
        # A user's cluster has the workers it has: the label names the cluster instead.
        if options.dask_address:
            return f"dask({options.dask_address})"
        return super().describe(scenario, options)

    def start(self) -> None:
        try:
            import distributed
        except ImportError as exc:
            raise RuntimeError(f"the dask executor needs distributed: {INSTALL_HINT}") from exc
        import dask

        address = self.setup.dask_address
        self._cluster = None
        if address:
            self._client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
        else:
            # A worker that dies fails its task at once (Dask would quietly re-run it on
            # a restarted worker): a killed worker is a crashed cell, never a result.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = distributed.LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            self._client = distributed.Client(self._cluster)
        self.worker_pids = sorted(self._client.run(os.getpid).values()) if not address else []
        workers = self._client.scheduler_info()["workers"]
        self._size = {"workers": len(workers),
                      "threads": sum(w["nthreads"] for w in workers.values()),
                      "hosts": len({w["host"] for w in workers.values()})}
        if address:  # a user's cluster: its workers are outside the cell's process tree
            self.workers = max(1, self._size["threads"])  # what it really runs at once
        from harness.executors import dask_usage

        self._usage = dask_usage.ClusterUsage(self._client) if address else None
        self._client.run(_preload, str(self.setup.scenario.path),  # imports are set-up
                         self.setup.scenario.version)
        self._feeder = ChunkFeeder(self._send, self._size["threads"], self.setup.chunksize)
        self._version = distributed.__version__

    def _send(self, units: list[Unit]) -> _BreakOnKilledWorker:
        clock = (self.t0_ns, time.time_ns() - (time.perf_counter_ns() - self.t0_ns),
                 socket.gethostname())
        return _BreakOnKilledWorker(self._client.submit(
            _run_chunk, str(self.setup.scenario.path), self.setup.ctx, clock, units,
            self.setup.stop_on_error, pure=False))

    def submit(self, unit: Unit) -> Any:
        return self._feeder.submit(unit)

    def request_stop(self) -> None:
        super().request_stop()
        self._feeder.stop()  # chunks already on workers finish: nothing is cancelled

    def run_started(self) -> None:
        if self._usage is not None:
            self._usage.start()  # the run phase only: as the parent samples the tree

    def run_ended(self) -> None:
        if self._usage is not None:
            self._cluster_usage = self._usage.stop()

    def shutdown(self) -> None:
        try:
            if getattr(self, "_feeder", None) is not None:
                self._feeder.close()
        finally:
            try:
                if getattr(self, "_client", None) is not None:
                    if self.setup.dask_address:  # our own cluster's workers exit with it
                        self._end_cell_on_workers()
                    self._client.close()
            finally:
                if getattr(self, "_cluster", None) is not None:  # a user's cluster stays up
                    self._cluster.close()

    def _end_cell_on_workers(self) -> None:
        ctx = self.setup.ctx
        try:
            self._client.run(_end_cell, str(self.setup.scenario.path), ctx.run_id,
                             ctx.cell_id)
        except Exception as exc:  # noqa: BLE001 - a dead cluster: nothing is left to close
            print(f"harness: could not close the cell's resources on the Dask workers "
                  f"({type(exc).__name__}: {exc})", file=sys.stderr)

    def info(self) -> dict[str, Any]:
        return {"workers": self.workers, "cluster": self.setup.dask_address or "local",
                # The cluster's real size (the fingerprint compares it): workers, threads, hosts.
                "cluster_workers": self._size["workers"], "threads": self._size["threads"],
                "hosts": self._size["hosts"], "chunks": self._feeder.chunks_sent,
                "worker_pids": self.worker_pids,
                "final_chunksize": self._feeder.sizer.size, "dask_version": self._version,
                "cluster_usage": getattr(self, "_cluster_usage", {})}
