"""The Dask cluster's own resource use, measured on every worker.

With ``--dask-address`` the workers are not in the cell's process tree, so the parent's
sampler cannot see them. :class:`ClusterUsage` starts a small psutil sampler thread on
every worker (``client.run``) when the run phase starts and collects its totals when it
ends: CPU seconds, peak memory (PSS, shared pages once) and read()/write() bytes of each
worker process, summed over the cluster. Sampling at 10 Hz in a thread of the worker
process costs that worker a little CPU (against DESIGN's "no sampler in the workload
process": there is no other way to see a remote worker); it is used only for a user's
cluster, never for a LocalCluster, whose workers the parent samples from outside. Per-worker
peaks are summed although they may come at different instants: an upper bound, said so.
"""

from __future__ import annotations

import threading
from typing import Any

SAMPLE_S = 0.1
_state: dict[str, Any] = {}


def _memory(proc: Any) -> float:
    try:
        return float(proc.memory_full_info().pss)
    except (AttributeError, OSError):
        return float(proc.memory_info().rss)


def _counters(proc: Any) -> dict[str, float]:
    cpu = proc.cpu_times()
    io = proc.io_counters()
    return {"cpu_s": cpu.user + cpu.system, "read_chars": float(getattr(io, "read_chars", 0)),
            "write_chars": float(getattr(io, "write_chars", 0))}


def _start_sampler() -> bool:
    """On a worker: remember the counters now and sample memory until stopped."""
    import psutil

    proc = psutil.Process()
    stop = threading.Event()
    state = {"proc": proc, "stop": stop, "first": _counters(proc), "peak": _memory(proc)}

    def loop() -> None:
        while not stop.wait(SAMPLE_S):
            state["peak"] = max(state["peak"], _memory(proc))

    state["thread"] = threading.Thread(target=loop, name="harness-usage", daemon=True)
    state["thread"].start()
    _state["sampler"] = state
    return True


def _stop_sampler() -> dict[str, float]:
    """On a worker: stop sampling; the deltas and the peak since the start."""
    state = _state.pop("sampler", None)
    if state is None:
        return {}
    state["stop"].set()
    state["thread"].join()
    last = _counters(state["proc"])
    usage = {key: last[key] - state["first"][key] for key in last}
    usage["memory_peak"] = max(state["peak"], _memory(state["proc"]))
    return usage


class ClusterUsage:
    """Start/stop the per-worker samplers through a Dask client."""

    def __init__(self, client: Any):
        self._client = client

    def start(self) -> None:
        self._client.run(_start_sampler)

    def stop(self) -> dict[str, float]:
        """Cluster totals: CPU seconds, summed peak memory in MB, I/O MB, worker count."""
        per_worker = [u for u in self._client.run(_stop_sampler).values() if u]
        if not per_worker:
            return {}
        return {"cpu_s": sum(u["cpu_s"] for u in per_worker),
                "memory_peak_mb": sum(u["memory_peak"] for u in per_worker) / 2**20,
                "read_chars_mb": sum(u["read_chars"] for u in per_worker) / 2**20,
                "write_chars_mb": sum(u["write_chars"] for u in per_worker) / 2**20,
                "workers": len(per_worker)}
