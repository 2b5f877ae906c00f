"""The sampler counts an exited child's work exactly once and measures its own cost."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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
    assert cpu >= 0.25  # the child's spin is kept after it exited
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


def _sample_late_child() -> tuple[list[tuple[int, dict]], int]:
    """Samples of a service series (not the first, the cell's tree) rooted at the parent."""
    samples: list[tuple[int, dict]] = []
    proc = subprocess.Popen([sys.executable, "-c", LATE_CHILD], stdout=subprocess.PIPE)
    sampler = Sampler({"tree": [os.getpid()], "service": [proc.pid]}, 20,
                      lambda s, t, v: s == "service" and samples.append((t, v))).start()
    started_ns = int(proc.stdout.readline())
    proc.wait()
    sampler.stop()
    return samples, started_ns


def test_a_child_never_seen_alive_is_counted_when_reaped(monkeypatch):
    monkeypatch.setattr(sampler_module, "DISCOVER_S", 100.0)  # only the 1 s refreshes
    samples, _ = _sample_late_child()
    cpu = max(v["cpu_user"] + v["cpu_sys"] for _, v in samples)
    assert cpu >= 0.25, cpu  # the child's spin, through the parent's children times


def test_a_service_child_started_mid_cell_is_seen_within_the_discovery_interval():
    samples, started_ns = _sample_late_child()
    seen = [t for t, v in samples if v["procs"] == 2]
    assert seen, "the child was never sampled alive"
    # it starts within ~0.1 s of the parent's print; one discovery interval and a tick later
    # it is in the tree (it was not until the next 1 s refresh)
    assert (seen[0] - started_ns) / 1e9 <= sampler_module.DISCOVER_S + 0.25
    cpu = max(v["cpu_user"] + v["cpu_sys"] for _, v in samples)
    assert 0.25 <= cpu < 0.6, cpu  # counted once: alive, then in the parent's children times
