"""The parent's observer: samples a process tree (and service processes) with psutil.

It runs on a thread of the parent, never in the workload process, so it cannot compete
for the workload's GIL. Process objects are cached and the child list is refreshed about
once a second (more often in the first second, when pools start; a service's every
:data:`DISCOVER_S` on Linux). On Linux the counters and the child list are read from
/proc directly (see ``_read_counters``): psutil's calls cost ~5x more, too much for a
10 Hz sampler to stay under 1% of a core. A process's CPU includes the children it
reaped, so a child that lived between two refreshes is counted all the same; counters of
processes that exit otherwise keep their last value, so tree totals never go backwards
when a pool worker ends. Memory is reported as RSS (every tick), and as PSS and USS from
/proc/PID/smaps_rollup, read at every refresh (it walks the page tables: ~0.4 ms per
process). PSS counts a page shared by k processes as 1/k in each, so a pool's summed PSS
counts shared pages once where summed RSS counts them k times. Between two smaps reads
the tree's PSS is carried forward by the change in private memory since the last read (new private
pages add to both alike: the change in RSS minus shared pages), so the memory guard
reacts at every tick.
The sampler's own CPU time (``thread_time``) is measured and reported.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import psutil

REFRESH_S = 1.0
FIRST_REFRESH_S = 0.1  # refresh quickly at first (pools start early), backing off to REFRESH_S
# Where the child list is cheap to read (Linux: /proc/PID/task/TID/children), a service's
# is re-read this often whatever the smaps schedule: a server's connection backends start
# and stop within a cell, and one started after a 1 s refresh was invisible until the next
# one. So is the cell's own tree until its run phase starts (:meth:`Sampler.run_started`):
# a pool worker first seen after t0 brought its whole start-up CPU into the run phase
# (~0.8 CPU-s in a 0.6 s csv_ingest cell, measured). After t0 the tree keeps the schedule:
# reading every pool thread's child list 5 times a second cost ~0.5% of a core, measured.
DISCOVER_S = 0.2
# Platforms whose kernels report a process's reaped children's CPU times (psutil gives 0
# elsewhere: there an exited child keeps its own last values, as before).
_CHILD_TIMES = sys.platform.startswith(("linux", "freebsd"))
# Counters the kernel folds into the reaping parent (CPU as its children's times, which a
# sample adds to the parent's own; I/O into its own /proc/PID/io).
_FOLDED = (("cpu_user", "cpu_sys") if _CHILD_TIMES else ()) + (
    "read_bytes", "write_bytes", "read_chars", "write_chars")
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
    parents: dict[int, int] = field(default_factory=dict)  # pid -> ppid, as last read
    uss: float = 0.0
    pss: float = 0.0
    rss_at_pss: float = 0.0  # the tree's private resident bytes when PSS was last read
    files: "_ProcFiles" = field(default_factory=lambda: _ProcFiles())

    def refresh(self, with_uss: bool) -> None:
        found: dict[int, psutil.Process] = {}
        for pid in self.roots:
            try:
                root = self.procs.get(pid) or psutil.Process(pid)
            except psutil.Error:
                continue
            found[pid] = root
            for child in _descendants(root):
                try:
                    found[child] = self.procs.get(child) or psutil.Process(child)
                except psutil.Error:
                    continue  # it exited since it was listed; its siblings stay
        # Gone from the tree: one still running left it (reparented) and keeps its last
        # values, as an exit the tree did not reap; one that exited stays listed, in order,
        # for sample() to decide who reaped it.
        for pid, proc in self.procs.items():
            if pid not in found:
                if self._exists(pid):
                    self._retire(pid, folded=False)
                else:
                    found[pid] = proc
        self.procs = found
        if with_uss:
            uss = pss = 0.0
            for proc in found.values():
                try:
                    proc_uss, proc_pss = _read_uss_pss(proc)
                except psutil.Error:
                    continue
                uss, pss = uss + proc_uss, pss + proc_pss
            self.uss, self.pss, self.rss_at_pss = uss, pss, -1.0  # anchored at the next sample

    def _exists(self, pid: int) -> bool:
        """Whether ``pid`` (a process once in the tree) still exists; its open /proc files
        are bound to it, so a reused pid reads as gone."""
        try:
            _read_counters(self.procs[pid], self.files)
            return True
        except psutil.Error:
            return False

    def _retire(self, pid: int, folded: bool) -> None:
        """Keep an exited process's counters in the tree's totals, exactly once.

        A process's CPU counters include its reaped children's (the kernel's children
        times, which cover every descendant waited for, seen or not: a backend that lived
        between two refreshes is counted when the server reaps it), and the kernel adds a
        reaped child's I/O to the parent's own /proc/PID/io. So a child ``folded`` into a
        parent of the tree (reaped by it: see :meth:`sample`) is already counted there, and
        keeping its values would count them twice. Any other exit (a daemon's child, a
        killed cell's workers reaped by init, a parent that never waits) keeps the last
        values read. A parent that ignores SIGCHLD reaps without children times: its
        children's CPU is lost (PostgreSQL and Python wait for theirs).
        """
        self.files.forget(pid)
        self.parents.pop(pid, None)
        for key, value in self.last.pop(pid, {}).items():
            if folded and key in _FOLDED:
                continue
            self.gone[key] = self.gone.get(key, 0.0) + value

    def sample(self) -> dict[str, float]:
        readings: dict[int, _Reading] = {}
        vanished = []
        for pid, proc in self.procs.items():
            try:
                readings[pid] = _read_counters(proc, self.files)
            except psutil.Error:
                vanished.append(pid)
        fresh: dict[int, bool] = {}  # parents read again this tick
        folded: dict[int, bool] = {}   # the vanished, parents before their children
        for pid in vanished:
            parent = self.parents.get(pid)
            # A parent that vanished too most likely reaped it first: wherever the parent's
            # counters went (a tree process's children times, or kept), the child's went.
            folded[pid] = folded[parent] if parent in folded else \
                self._reaped_by(parent, readings, fresh)
        for pid in vanished:
            self._retire(pid, folded[pid])
            del self.procs[pid]
        totals = dict.fromkeys(_COUNTERS, 0.0)
        rss = private = threads = 0.0
        for pid, reading in readings.items():
            self.last[pid], self.parents[pid] = reading.counters, reading.ppid
            for key, value in reading.counters.items():
                totals[key] += value
            rss += reading.rss
            private += reading.rss - reading.shared
            threads += reading.threads
        alive = len(readings)
        for key, value in self.gone.items():
            totals[key] += value
        if self.rss_at_pss < 0:  # PSS was just read: anchor it to this sample
            self.rss_at_pss = private
        # Carried forward by the change in private resident memory (RSS minus shared
        # pages): shared pages a pool maps later are not counted once per process.
        pss = max(0.0, self.pss + private - self.rss_at_pss) if self.pss else rss
        totals.update(rss=rss, uss=self.uss, pss=pss, threads=threads, procs=alive)
        return totals

    def _reaped_by(self, parent: int | None, readings: dict[int, "_Reading"],
                   fresh: dict[int, bool]) -> bool:
        """Whether a child of ``parent`` that vanished this tick is in ``parent``'s children
        times in this very sample. Its /proc entry goes only when it is waited for, so a
        parent still alive has reaped it; but the parent may have been read before that:
        it is read again (once per tick), so the sample neither dips nor counts it twice."""
        if parent not in readings or not readings[parent].reaps:
            return False  # gone or a zombie: someone else (init) reaps its children
        if parent not in fresh:
            try:
                readings[parent] = _read_counters(self.procs[parent], self.files)
                fresh[parent] = readings[parent].reaps
            except psutil.Error:
                fresh[parent] = False
                del readings[parent]  # it exited too: retired at the next tick
        return fresh[parent]


# Linux fast path. psutil's five calls per process cost ~190 us (measured on a 2-core
# machine); reading /proc/PID/{stat,statm,io,status} directly ~45 us, and finding children
# through /proc/PID/task/TID/children avoids psutil's scan of every process on the system
# (~4 ms). At 10 Hz over a pool of workers that is the difference between ~3% and well
# under 1% of a core (tests/perf/test_overhead.py). psutil remains the fallback elsewhere.
_PROCFS = sys.platform.startswith("linux") and os.path.exists(f"/proc/{os.getpid()}/io")
_CHILDREN_FILES = _PROCFS and os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
_TICKS = os.sysconf("SC_CLK_TCK") if _PROCFS else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if _PROCFS else 4096


class _ProcFiles:
    """/proc/PID/{stat,statm,io,status} kept open and re-read with ``pread`` at offset 0
    (the kernel regenerates the text): half the cost of reopening them every tick. A
    descriptor stays bound to its process, so a reused pid cannot be misread."""

    NAMES = ("stat", "statm", "io", "status")

    def __init__(self) -> None:
        self._fds: dict[int, list[int]] = {}

    def read(self, pid: int) -> list[bytes]:
        fds = self._fds.get(pid)
        if fds is None:
            fds = []
            try:
                for name in self.NAMES:
                    fds.append(os.open(f"/proc/{pid}/{name}", os.O_RDONLY))
            except OSError:
                for fd in fds:
                    os.close(fd)
                raise
            self._fds[pid] = fds
        return [os.pread(fd, 16384, 0) for fd in fds]

    def forget(self, pid: int) -> None:
        for fd in self._fds.pop(pid, ()):
            os.close(fd)

    def close(self) -> None:
        for pid in list(self._fds):
            self.forget(pid)


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 16384)
    finally:
        os.close(fd)


def _descendants(root: psutil.Process) -> list[int]:
    """Pids of every descendant of ``root`` (a child that appears mid-walk is found at the
    next refresh)."""
    if not _CHILDREN_FILES:
        return [child.pid for child in root.children(recursive=True)]
    found, todo = [], [root.pid]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:  # each thread lists the children it started
            try:
                kids = [int(k) for k in _read_file(f"/proc/{pid}/task/{tid}/children").split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _status_field(status: bytes, key: bytes) -> int:
    start = status.index(key) + len(key)
    return int(status[start:status.index(b"\n", start)])


def _read_uss_pss(proc: psutil.Process) -> tuple[float, float]:
    """Unique and proportional set size from smaps_rollup, as psutil sums them."""
    if _PROCFS:
        try:
            lines = _read_file(f"/proc/{proc.pid}/smaps_rollup").splitlines()
            uss = sum(int(line.split()[1]) for line in lines if line.startswith(b"Private_"))
            pss = sum(int(line.split()[1]) for line in lines if line.startswith(b"Pss:"))
            return uss * 1024.0, pss * 1024.0
        except (OSError, ValueError, IndexError):
            pass  # no smaps_rollup (kernel < 4.14) or not ours: psutil reads smaps
    info = proc.memory_full_info()
    return float(info.uss), float(getattr(info, "pss", info.uss))


class _Reading(NamedTuple):
    """One process at one tick (a tuple: one is made per process per tick)."""

    counters: dict[str, float]  # cumulative: CPU (its own and its reaped children's), I/O, ...
    rss: float
    threads: int
    shared: float               # shared resident bytes
    ppid: int
    reaps: bool                 # alive, not a zombie: a child it waits for joins its counters


def _read_counters(proc: psutil.Process, files: _ProcFiles) -> _Reading:
    """One process's counters and memory (psutil.Error when gone)."""
    if _PROCFS:
        try:
            stat, statm, io_text, status = files.read(proc.pid)
            fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
            io_tokens = io_text.split()
            io = dict(zip(io_tokens[::2], io_tokens[1::2]))
            # RSS from statm, as psutil reads it (stat's copy lags behind)
            # utime + cutime, stime + cstime: own CPU and that of the children it reaped
            return _Reading(
                {"cpu_user": (int(fields[11]) + int(fields[13])) / _TICKS,
                 "cpu_sys": (int(fields[12]) + int(fields[14])) / _TICKS,
                 "read_bytes": int(io[b"read_bytes:"]), "write_bytes": int(io[b"write_bytes:"]),
                 "read_chars": int(io[b"rchar:"]), "write_chars": int(io[b"wchar:"]),
                 "ctx_vol": _status_field(status, b"\nvoluntary_ctxt_switches:"),
                 "ctx_invol": _status_field(status, b"\nnonvoluntary_ctxt_switches:")},
                int(statm.split()[1]) * _PAGE, int(fields[17]), int(statm.split()[2]) * _PAGE,
                int(fields[1]), fields[0] not in (b"Z", b"X"))
        except (FileNotFoundError, ProcessLookupError):
            raise psutil.NoSuchProcess(proc.pid) from None
        except (OSError, ValueError, KeyError, IndexError):
            files.forget(proc.pid)  # not ours to read, or an odd format: psutil says why
    with proc.oneshot():
        cpu, mem, io, ctx, n_threads = (proc.cpu_times(), proc.memory_info(),
                                        proc.io_counters(), proc.num_ctx_switches(),
                                        proc.num_threads())
        ppid, status = proc.ppid(), proc.status()
    children = _CHILD_TIMES  # elsewhere psutil reports them as 0
    return _Reading(
        {"cpu_user": cpu.user + (getattr(cpu, "children_user", 0.0) if children else 0.0),
         "cpu_sys": cpu.system + (getattr(cpu, "children_system", 0.0) if children else 0.0),
         "read_bytes": io.read_bytes, "write_bytes": io.write_bytes,
         "read_chars": getattr(io, "read_chars", 0),
         "write_chars": getattr(io, "write_chars", 0),
         "ctx_vol": ctx.voluntary, "ctx_invol": ctx.involuntary}, mem.rss, n_threads,
        getattr(mem, "shared", 0), ppid,
        status not in (psutil.STATUS_ZOMBIE, getattr(psutil, "STATUS_DEAD", "dead")))


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
        self._run_phase = threading.Event()  # the cell's run phase has begun
        self._thread = threading.Thread(target=self._loop, name="harness-sampler", daemon=True)
        self.ticks = 0
        self.cpu_ns = 0
        self.wall_ns = 0

    def start(self) -> "Sampler":
        if self._interval > 0 and self._series:
            self._thread.start()
        return self

    def run_started(self) -> None:
        """The run phase began (t0): the cell's tree is set up, its child list goes on the
        slower schedule."""
        self._run_phase.set()

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
        try:
            self._sample_until_stopped()
        finally:
            for series in self._series:
                series.files.close()

    def _sample_until_stopped(self) -> None:
        cpu0 = time.thread_time_ns()
        start = time.perf_counter_ns()
        next_refresh = next_discover = 0.0
        refresh_every = FIRST_REFRESH_S
        next_tick = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            refresh = now >= next_refresh
            if refresh:
                next_refresh = now + refresh_every
                refresh_every = min(REFRESH_S, refresh_every * 2)
            discover = _CHILDREN_FILES and now >= next_discover
            if discover:
                next_discover = now + DISCOVER_S
            t_ns = time.perf_counter_ns()
            for index, series in enumerate(self._series):
                # services: backends come and go; the tree: pools start before t0
                if refresh or (discover and (index > 0 or not self._run_phase.is_set())):
                    series.refresh(with_uss=refresh)
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
