"""PostgreSQL in a container: sample the container's stats as the ``postgres`` series.

When ``DATABASE_URL`` points at a port on this machine that a Docker container publishes
(``make up``), the server's processes are not ours to see with psutil; the Docker engine
reports the container's CPU, memory and block I/O instead. :func:`find_container` asks the
engine (docker SDK) which running container publishes that port; :class:`ContainerStatsSampler`
reads the engine's stats stream (about one sample a second, the engine's own rate) on a
thread and emits samples with the same keys as the psutil series, so the analysis treats
both alike. Without an engine (or the docker package) nothing is sampled and nothing hangs.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}
ENGINE_TIMEOUT_S = 2


def _port_of(dsn: str) -> int | None:
    parts = urlsplit(dsn)
    if parts.hostname not in LOOPBACK or parts.hostname is None:
        return None
    return parts.port or 5432


def find_container(dsn: str) -> Any | None:
    """The running container that publishes ``dsn``'s port on this machine, else None."""
    port = _port_of(dsn)
    if port is None:
        return None
    try:
        import docker

        client = docker.from_env(timeout=ENGINE_TIMEOUT_S)
        client.ping()
        containers = client.containers.list()
    except Exception:  # no docker package, no engine, no permission: not a container setup
        return None
    for container in containers:
        for bindings in (container.ports or {}).values():
            for binding in bindings or []:
                if str(binding.get("HostPort")) == str(port):
                    return container
    return None


def stats_to_sample(stats: dict[str, Any]) -> dict[str, float]:
    """One Docker stats document as a psutil-style sample (cumulative counters)."""
    cpu = stats.get("cpu_stats", {}).get("cpu_usage", {})
    memory = stats.get("memory_stats", {})
    io = stats.get("blkio_stats", {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in io if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in io if str(e.get("op", "")).lower() == "write")
    return {
        "cpu_user": cpu.get("usage_in_usermode", cpu.get("total_usage", 0)) / 1e9,
        "cpu_sys": cpu.get("usage_in_kernelmode", 0) / 1e9,
        "rss": float(memory.get("usage", 0)),
        "uss": float(memory.get("usage", 0)) - float(memory.get("stats", {}).get("cache", 0)),
        "read_bytes": float(read), "write_bytes": float(write),
        "read_chars": float(read), "write_chars": float(write),
        "ctx_vol": 0.0, "ctx_invol": 0.0,
        "threads": 0.0, "procs": float(stats.get("pids_stats", {}).get("current", 0)),
    }


class ContainerStatsSampler:
    """Streams a container's stats on a thread and reports them as series ``name``."""

    def __init__(self, container: Any, on_sample: Callable[[str, int, dict[str, Any]], None],
                 name: str = "postgres"):
        self._container = container
        self._on_sample = on_sample
        self._name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-container-stats",
                                        daemon=True)

    def start(self) -> "ContainerStatsSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)  # the stream yields about once a second

    def _loop(self) -> None:
        try:
            for stats in self._container.stats(stream=True, decode=True):
                self._on_sample(self._name, time.perf_counter_ns(), stats_to_sample(stats))
                if self._stop.is_set():
                    return
        except Exception:  # the engine went away: the cell goes on without this series
            return
