"""The parent's observer: samples a process tree (and service processes) with psutil.

It runs on a thread of the parent, never in the workload process, so it cannot compete
for the workload's GIL. Process objects are cached and the child list is refreshed about
once a second (more often in the first second, when pools start) (a ``children(recursive=True)`` walk scans /proc and costs milliseconds).
Counters of processes that exit keep their last value, so tree totals never go backwards
when a pool worker ends. USS needs /proc/PID/smaps and is read at the refresh rate only.
The sampler's own CPU time (``thread_time``) is measured and reported.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

REFRESH_S = 1.0
FIRST_REFRESH_S = 0.1  # refresh quickly at first (pools start early), backing off to REFRESH_S
_COUNTERS = ("cpu_user", "cpu_sys", "read_bytes", "write_bytes", "read_chars", "write_chars",
             "ctx_vol", "ctx_invol")


@dataclass
class _Series:
    """One sampled tree: a root pid (or several) and its cached descendants."""

    name: str
    roots: list[int]
    procs: dict[int, psutil.Process] = field(default_factory=dict)
    last: dict[int, dict[str, float]] = field(default_factory=dict)  # last counters per pid
    gone: dict[str, float] = field(default_factory=dict)  # counters of exited processes
    uss: float = 0.0

    def refresh(self, with_uss: bool) -> None:
        found: dict[int, psutil.Process] = {}
        for pid in self.roots:
            try:
                root = self.procs.get(pid) or psutil.Process(pid)
                found[pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = self.procs.get(child.pid, child)
            except psutil.Error:
                continue
        for pid in set(self.procs) - set(found):
            self._retire(pid)
        self.procs = found
        if with_uss:
            total = 0.0
            for proc in found.values():
                try:
                    total += proc.memory_full_info().uss
                except psutil.Error:
                    continue
            self.uss = total

    def _retire(self, pid: int) -> None:
        for key, value in self.last.pop(pid, {}).items():
            self.gone[key] = self.gone.get(key, 0.0) + value

    def sample(self) -> dict[str, float]:
        totals = dict.fromkeys(_COUNTERS, 0.0)
        rss = threads = 0.0
        alive = 0
        for pid, proc in list(self.procs.items()):
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    mem = proc.memory_info()
                    io = proc.io_counters()
                    ctx = proc.num_ctx_switches()
                    n_threads = proc.num_threads()
            except psutil.Error:
                self._retire(pid)
                del self.procs[pid]
                continue
            counters = {"cpu_user": cpu.user, "cpu_sys": cpu.system,
                        "read_bytes": io.read_bytes, "write_bytes": io.write_bytes,
                        "read_chars": getattr(io, "read_chars", 0),
                        "write_chars": getattr(io, "write_chars", 0),
                        "ctx_vol": ctx.voluntary, "ctx_invol": ctx.involuntary}
            self.last[pid] = counters
            for key, value in counters.items():
                totals[key] += value
            rss += mem.rss
            threads += n_threads
            alive += 1
        for key, value in self.gone.items():
            totals[key] += value
        totals.update(rss=rss, uss=self.uss, threads=threads, procs=alive)
        return totals


class Sampler:
    """Samples named process trees at ``hz`` on a background thread.

    ``on_sample(series, t_ns, values)`` receives every sample (``t_ns`` on the
    ``perf_counter_ns`` clock); ``on_tick(tree_values)`` sees the main series each tick
    (the runner uses it to enforce the memory budget).
    """

    def __init__(self, trees: dict[str, list[int]], hz: float,
                 on_sample: Callable[[str, int, dict[str, float]], None],
                 on_tick: Callable[[dict[str, float]], None] | None = None):
        self._series = [_Series(name, list(pids)) for name, pids in trees.items() if pids]
        self._interval = 1.0 / hz if hz > 0 else 0.0
        self._on_sample = on_sample
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-sampler", daemon=True)
        self.ticks = 0
        self.cpu_ns = 0
        self.wall_ns = 0

    def start(self) -> "Sampler":
        if self._interval > 0 and self._series:
            self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling; return the sampler's own cost."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        wall = self.wall_ns / 1e9
        cpu = self.cpu_ns / 1e9
        return {"ticks": self.ticks, "hz": 1 / self._interval if self._interval else 0.0,
                "cpu_s": cpu, "wall_s": wall,
                "cpu_fraction": cpu / wall if wall > 0 else 0.0}

    def _loop(self) -> None:
        cpu0 = time.thread_time_ns()
        start = time.perf_counter_ns()
        next_refresh = 0.0
        refresh_every = FIRST_REFRESH_S
        next_tick = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            refresh = now >= next_refresh
            if refresh:
                next_refresh = now + refresh_every
                refresh_every = min(REFRESH_S, refresh_every * 2)
            t_ns = time.perf_counter_ns()
            for index, series in enumerate(self._series):
                if refresh:
                    series.refresh(with_uss=True)
                values = series.sample()
                self._on_sample(series.name, t_ns, values)
                if index == 0 and self._on_tick is not None:
                    self._on_tick(values)
            self.ticks += 1
            self.cpu_ns = time.thread_time_ns() - cpu0
            self.wall_ns = time.perf_counter_ns() - start
            next_tick += self._interval
            delay = next_tick - time.perf_counter()
            if delay < 0:  # fell behind (a slow /proc scan): do not burst to catch up
                next_tick = time.perf_counter()
                delay = 0
            self._stop.wait(delay)
