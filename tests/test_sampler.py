"""The sampler counts an exited child's work exactly once and measures its own cost."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from harness import sampler as sampler_module
from harness.sampler import Sampler

# The parent starts a child that writes 4 MB and exits; the parent reaps it, then idles.
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import os, time; time.sleep(0.6); fd = os.open(os.devnull, os.O_WRONLY); "
    "[os.write(fd, b'x' * 65536) for _ in range(64)]; "
    "end = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"])
child.wait()
time.sleep(1.0)
"""


def test_exited_child_counted_once():
    samples = []
    proc = subprocess.Popen([sys.executable, "-c", TREE])
    sampler = Sampler({"tree": [proc.pid]}, 20, lambda s, t, v: samples.append(v)).start()
    proc.wait()
    time.sleep(0.1)
    cost = sampler.stop()
    assert max(s["procs"] for s in samples) == 2  # the child was seen while it ran
    written = max(s["write_chars"] for s in samples)
    # 4 MiB written by the child: counted once (the kernel folds it into the reaping parent).
    assert 4 * 2**20 <= written < 6 * 2**20, written
    cpu = max(s["cpu_user"] + s["cpu_sys"] for s in samples)
    assert 0.25 <= cpu < 0.5, cpu  # the child's spin is kept after it exited, and once
    assert cost["ticks"] >= 10 and 0 <= cost["cpu_fraction"] < 0.2


# After the sampler's first quick refreshes (0.1, 0.3, 0.7 s, ...), the parent starts a child
# that spins and exits, prints when it started it (perf_counter: the sampler's clock), reaps
# it and idles: a server's connection backend, born and gone between two refreshes.
LATE_CHILD = """
import subprocess, sys, time
time.sleep(0.8)
print(time.perf_counter_ns(), flush=True)
subprocess.run([sys.executable, "-c",
    "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"])
time.sleep(0.6)
"""


def _sample_late_child() -> tuple[list[tuple[int, dict]], int, float]:
    """Samples of a service series (not the first, the cell's tree) rooted at the parent,
    when the parent started the child, and the parent's whole CPU as wait4 reports it (its
    own and its reaped child's: what the series must add up to, but for the parent's exit
    after its last sample, ~0.04 s; a child lost or counted twice is 0.3 s off)."""
    samples: list[tuple[int, dict]] = []
    proc = subprocess.Popen([sys.executable, "-c", LATE_CHILD], stdout=subprocess.PIPE)
    sampler = Sampler({"tree": [os.getpid()], "service": [proc.pid]}, 20,
                      lambda s, t, v: s == "service" and samples.append((t, v))).start()
    try:
        started_ns = int(proc.stdout.readline())
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        sampler.stop()
    return samples, started_ns, usage.ru_utime + usage.ru_stime


def _cpu(values: dict) -> float:
    return values["cpu_user"] + values["cpu_sys"]


@pytest.mark.skipif(not sampler_module._CHILD_TIMES, reason="no children times here")
def test_a_child_never_seen_alive_is_counted_when_reaped(monkeypatch):
    for name in ("FIRST_REFRESH_S", "REFRESH_S", "DISCOVER_S"):
        monkeypatch.setattr(sampler_module, name, 100.0)  # the child list is read at start only
    samples, _, whole = _sample_late_child()
    assert max(v["procs"] for _, v in samples) == 1  # the child was never seen
    # its spin, through the parent's children times
    assert _cpu(samples[-1][1]) == pytest.approx(whole, abs=0.1) and whole >= 0.3


@pytest.mark.skipif(not sampler_module._CHILDREN_FILES, reason="no cheap child lists here")
def test_a_service_child_started_mid_cell_is_seen_within_the_discovery_interval():
    samples, started_ns, whole = _sample_late_child()
    seen = [t for t, v in samples if v["procs"] == 2]
    assert seen, "the child was never sampled alive"
    # it starts within ~0.1 s of the parent's print; one discovery interval and a tick later
    # it is in the tree (it was not until the next 1 s refresh)
    assert (seen[0] - started_ns) / 1e9 <= sampler_module.DISCOVER_S + 0.25
    # seen alive, then reaped: counted once, and the total never dips when it goes
    cpu = [_cpu(v) for _, v in samples]
    assert cpu[-1] == pytest.approx(whole, abs=0.1) and whole >= 0.3
    assert all(b >= a for a, b in zip(cpu, cpu[1:])), cpu


# The root starts a child that starts a spinning grandchild and exits without waiting for it
# (a daemon's double fork): the grandchild leaves the tree alive, reparented elsewhere.
ORPHAN = """
import subprocess, sys, time
spin = "import time\\nend = time.process_time() + 0.8\\nwhile time.process_time() < end: pass"
middle = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {spin!r}]); time.sleep(0.5)"
subprocess.run([sys.executable, "-c", middle])
time.sleep(1.0)
"""


@pytest.mark.skipif(not sampler_module._CHILDREN_FILES, reason="no cheap child lists here")
def test_a_grandchild_that_leaves_the_tree_alive_keeps_what_it_had_used():
    samples: list[dict] = []
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN])
    sampler = Sampler({"tree": [os.getpid()], "service": [proc.pid]}, 20,
                      lambda s, t, v: s == "service" and samples.append(v)).start()
    try:
        proc.wait()
    finally:
        sampler.stop()
    assert max(v["procs"] for v in samples) == 3  # root, child and grandchild were seen
    cpu = [_cpu(v) for v in samples]
    # the grandchild's CPU while it was in the tree stays counted: the total never dips
    assert all(b >= a for a, b in zip(cpu, cpu[1:])), cpu
    assert cpu[-1] >= 0.3, cpu[-1]


# Set-up then run: the root starts a worker after the sampler's first quick refreshes; the
# worker spends 0.4 s of CPU starting up, then idles (a pool worker waiting for units).
LATE_WORKER = """
import subprocess, sys, time
time.sleep(0.8)
subprocess.Popen([sys.executable, "-c",
    "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass\\n"
    "time.sleep(2.0)"])
print(time.perf_counter_ns(), flush=True)
time.sleep(2.2)
"""


@pytest.mark.skipif(not sampler_module._CHILDREN_FILES, reason="no cheap child lists here")
def test_a_pool_started_before_t0_brings_no_start_up_cpu_into_the_run_phase():
    samples: list[tuple[int, dict]] = []
    proc = subprocess.Popen([sys.executable, "-c", LATE_WORKER], stdout=subprocess.PIPE)
    sampler = Sampler({"tree": [proc.pid]}, 20, lambda s, t, v: samples.append((t, v))).start()
    try:
        spawned_ns = int(proc.stdout.readline())
        time.sleep(0.7)  # the worker's start-up is over: t0
        t0 = time.perf_counter_ns()
        sampler.run_started()
        time.sleep(0.5)
    finally:
        sampler.stop()
        proc.kill()
        proc.wait()
    before = [_cpu(v) for t, v in samples if t < t0]
    during = [_cpu(v) for t, v in samples if t >= t0]
    assert before[-1] >= 0.35  # the worker was found, start-up and all, before t0
    # (without discovery before t0 it was first seen at the 1.5 s refresh, inside the "run")
    assert during[-1] - before[-1] < 0.1, (before[-1], during[-1], spawned_ns)
