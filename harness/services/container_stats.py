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

import sys
import threading
import time
from typing import Any, Callable

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ENGINE_TIMEOUT_S = 2
NOT_MEASURED = float("nan")  # the engine does not report it: never a made-up zero


def _port_of(dsn: str) -> int | None:
    """The local port of ``dsn`` (URL or key=value form), None when not on this machine."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    if params.get("host") not in LOOPBACK:
        return None
    return int(params.get("port") or 5432)


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
    cache = memory.get("stats", {})
    page_cache = cache.get("cache", cache.get("inactive_file", 0))  # cgroup v1 / v2
    io = stats.get("blkio_stats", {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in io if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in io if str(e.get("op", "")).lower() == "write")
    return {
        "cpu_user": cpu.get("usage_in_usermode", cpu.get("total_usage", 0)) / 1e9,
        "cpu_sys": cpu.get("usage_in_kernelmode", 0) / 1e9,
        "rss": float(memory.get("usage", 0)),
        "uss": float(memory.get("usage", 0)) - float(page_cache),
        "read_bytes": float(read), "write_bytes": float(write),
        "read_chars": NOT_MEASURED, "write_chars": NOT_MEASURED,
        "ctx_vol": NOT_MEASURED, "ctx_invol": NOT_MEASURED, "threads": NOT_MEASURED,
        "procs": float(stats.get("pids_stats", {}).get("current", 0)),
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
        # The stream's first document comes a second or two after it opens: take one sample
        # now, so the cell's window has a starting point (as PgStatsSampler does).
        import docker

        try:
            self._emit(self._container.stats(stream=False, one_shot=True))
        except docker.errors.DockerException as exc:  # engine API < 1.41: no one-shot stats
            print(f"harness: no first container sample ({exc}); the stream's first one counts",
                  file=sys.stderr)
        self._thread.start()
        return self

    def _emit(self, stats: dict[str, Any]) -> None:
        self._on_sample(self._name, time.perf_counter_ns(), stats_to_sample(stats))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)  # the stream yields about once a second

    def _loop(self) -> None:
        import docker

        try:
            for stats in self._container.stats(stream=True, decode=True):
                self._emit(stats)
                if self._stop.is_set():
                    return
        except (docker.errors.DockerException, OSError) as exc:
            # The engine went away: the series ends here, and says so, while the cell goes on.
            print(f"harness: container stats of {self._name} stopped: {exc}", file=sys.stderr)
