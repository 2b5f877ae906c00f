"""dask: the same units on a Dask cluster (a LocalCluster by default, or ``--dask-address``).

A LocalCluster has ``--workers`` worker processes of one thread each, listening on
127.0.0.1 only, with no dashboard (no fixed port to collide on). Its startup and shutdown
are **inside the measured window**, as the processes mode's pool startup is: starting a
cluster is part of what choosing Dask costs. ``info`` reports both (``cluster_start_s``,
``cluster_close_s``) so the table can be read either way. With ``--dask-address`` the
harness connects to an existing scheduler and never closes that cluster.

Units travel in chunks that keep per-unit timing (each unit is timed on the worker), sized
like the processes mode's (``ChunkSizer``: adaptive, ~50 ms of work per chunk, shrinking as
the work runs out), at most two chunks in flight per worker thread. Every task is submitted
with ``pure=False``: Dask's default (``pure=True``) keys a task by its arguments and computes
identical calls once, which would fake a speedup. Workers load the scenario file by path,
once per process (cached); the nanny starts workers with spawn, so everything shipped
imports from real modules.

``--on-error stop``: a worker stops its own chunk at the first failed unit; the cell
process stops submitting after the first failed record and lets the chunks already handed
to Dask finish, recording the rest as not-run. Nothing is cancelled: a cancelled task that
had already started keeps running on its worker, so its units would be recorded as not-run
while they really ran. The overshoot is bounded by the chunks in flight.

A worker that dies is restarted by its nanny and Dask retries the tasks it held (its
default ``allowed-failures``, left as users get it): units of a retried chunk may run twice,
which a scenario's ``verify`` shows for work that is not idempotent. A chunk that keeps
killing workers is recorded as failed (``KilledWorker``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
import time
from typing import Any

from harness.discovery import LoadedScenario, load_path
from harness.modes import register
from harness.modes.base import (Execution, Mode, ModeOptions, error_tuple, not_run_tuple,
                                run_chunk, worker_name)
from harness.modes.processes import ChunkSizer
from harness.scenario import Context, Unit

INSTALL_HINT = "pip install 'dask[distributed]'"
CONNECT_TIMEOUT_S = 30


_loaded: dict[str, LoadedScenario] = {}
_load_lock = threading.Lock()


def _scenario(path: str) -> LoadedScenario:
    """The scenario module on a worker, loaded once per process per path. A worker with
    several threads runs tasks at once: the others wait for the first load, since
    ``load_path`` registers the module before executing it (half-built until then)."""
    scenario = _loaded.get(path)
    if scenario is None:
        with _load_lock:
            scenario = _loaded.get(path)
            if scenario is None:
                scenario = _loaded[path] = load_path(path)
    return scenario


def _local_t0(clock: tuple[int, int, str]) -> int:
    """The cell's t0 on this process's ``perf_counter_ns`` clock.

    On the cell's own host the monotonic clock is shared, so t0 is exact; on another host
    it is translated through the wall clock (as good as the hosts' NTP sync).
    """
    t0_perf, t0_wall, host = clock
    if host == socket.gethostname():
        return t0_perf
    return time.perf_counter_ns() - (time.time_ns() - t0_wall)


_contexts: dict[tuple[str, str], Context] = {}


def _cell_context(ctx: Context) -> Context:
    """The first copy of this cell's context seen by this worker process. Every task ships
    a fresh copy; keeping the first one keeps its per-thread resources (a database
    connection, an HTTP session) alive across chunks, as in the processes mode."""
    return _contexts.setdefault((ctx.run_id, ctx.cell_id), ctx)


def _run_chunk(path: str, ctx: Context, clock: tuple[int, int, str], units: list[Unit],
               intended_ns: int, stop_on_error: bool) -> list[tuple[Any, ...]]:
    """Run one chunk on a Dask worker; one record tuple per unit."""
    return run_chunk(_scenario(path).module.work, units, _cell_context(ctx), _local_t0(clock),
                     intended_ns, worker_name(), stop_on_error)


@register
class DaskMode(Mode):
    name = "dask"
    description = "Dask distributed: LocalCluster of --workers processes (or --dask-address)"
    simplicity = 5
    default_workers = os.cpu_count() or 2

    def label(self, scenario: LoadedScenario, options: ModeOptions) -> str:
        return f"dask({options.dask_address})" if options.dask_address else self.name

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("distributed") is None:
            return False, INSTALL_HINT
        return True, ""

    def run(self, ex: Execution) -> dict[str, Any]:
        try:
            import distributed
        except ImportError as exc:
            raise RuntimeError(f"the dask mode needs distributed: {INSTALL_HINT}") from exc
        opts = ex.options
        # Units are due when the mode starts: their latency includes the cluster startup,
        # as processes-mode latencies include the pool's spawn.
        due = ex.now_ns()
        cluster = client = None
        workers: list[Any] = []
        try:
            if opts.dask_address:
                client = distributed.Client(opts.dask_address, timeout=CONNECT_TIMEOUT_S)
            else:
                cluster = distributed.LocalCluster(
                    n_workers=opts.workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
                client = distributed.Client(cluster)
            ready = ex.now_ns()
            info = self._execute(ex, client, due)
            if cluster is not None:
                workers = _worker_processes(client)
        finally:
            closing = ex.now_ns()
            if client is not None:
                client.close()
            if cluster is not None:  # an existing scheduler is the user's: never closed
                cluster.close()
        info.update(cluster="local" if cluster is not None else opts.dask_address,
                    cluster_start_s=(ready - due) / 1e9,
                    cluster_close_s=(ex.now_ns() - closing) / 1e9,
                    worker_pids=sorted(p.pid for p in workers),
                    leftover_killed=_kill_leftovers(workers),
                    dask_version=distributed.__version__)
        return info

    def _execute(self, ex: Execution, client: Any, due: int) -> dict[str, Any]:
        from distributed import as_completed

        opts = ex.options
        cluster = list(client.scheduler_info()["workers"].values())
        threads = sum(w["nthreads"] for w in cluster)
        # The context travels with every task (~1 KB): scattered data would be lost with the
        # first worker that dies, failing every task that needs it.
        ctx = ex.ctx
        clock = (ex.t0_ns, _wall_t0(ex), socket.gethostname())
        path, stop = str(ex.scenario.path), opts.on_error == "stop"
        pending = list(reversed(ex.units))
        sizer = ChunkSizer(opts.chunksize, threads)
        chunks_sent = 0
        in_flight: dict[Any, list[Unit]] = {}
        completed = as_completed()

        def submit() -> None:
            nonlocal chunks_sent
            while pending and len(in_flight) < 2 * max(threads, 1) and not ex.stop_requested:
                batch = [pending.pop() for _ in range(sizer.next_size(len(pending)))]
                future = client.submit(_run_chunk, path, ctx, clock, batch, due, stop,
                                       pure=False)
                in_flight[future] = batch
                completed.add(future)
                chunks_sent += 1

        submit()
        for future in completed:
            batch = in_flight.pop(future)
            try:
                records = future.result()
            except Exception as exc:  # the task itself failed (KilledWorker, unpicklable unit)
                now = ex.now_ns()
                records = [error_tuple(u, "", due, now, now, exc) for u in batch]
            ex.recorder.add_many(records)
            sizer.observe(records)
            submit()
        ex.recorder.add_many([not_run_tuple(u, "stopped after an earlier failure", due)
                              for u in reversed(pending)])
        # The cluster's real size (an external scheduler's, not --workers): in the fingerprint.
        return {"workers": opts.workers, "threads": threads, "cluster_workers": len(cluster),
                "hosts": len({w.get("host") for w in cluster}), "chunks": chunks_sent,
                "final_chunksize": sizer.size}


def _wall_t0(ex: Execution) -> int:
    """The wall-clock instant of the cell's t0 (for workers on other hosts)."""
    return time.time_ns() - (time.perf_counter_ns() - ex.t0_ns)


def _worker_processes(client: Any) -> list[Any]:
    """The LocalCluster's worker processes and their descendants (psutil objects)."""
    import psutil

    procs = []
    for pid in client.run(os.getpid).values():
        try:
            proc = psutil.Process(pid)
            procs += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    return procs


def _kill_leftovers(procs: list[Any], grace_s: float = 3.0) -> int:
    """Kill whatever of ``procs`` outlived the cluster's close; return how many.

    Only the cluster's own processes: multiprocessing's resource tracker (a child of this
    process too) ignores SIGTERM and exits by itself with the cell process.
    """
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=grace_s if procs else 0)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    return len(alive)
