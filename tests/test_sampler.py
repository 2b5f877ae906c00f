"""The sampler counts an exited child's work exactly once and measures its own cost."""

from __future__ import annotations

import subprocess
import sys
import time

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
