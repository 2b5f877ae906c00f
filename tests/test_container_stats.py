"""Container stats: found only for a local published port; converted like psutil samples."""

from __future__ import annotations

import time

from harness.services.container_stats import find_container, stats_to_sample


def test_no_engine_or_remote_host_means_no_container_quickly():
    start = time.monotonic()
    # No Docker engine runs on the CI machines; a remote host is never a local container.
    assert find_container("postgresql://postgres@127.0.0.1:1/test") is None
    assert find_container("postgresql://u@db.example.invalid:5432/x") is None
    assert time.monotonic() - start < 10


def test_stats_document_becomes_a_psutil_style_sample():
    doc = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000,
                                       "usage_in_usermode": 2_000_000_000,
                                       "usage_in_kernelmode": 1_000_000_000}},
           "memory_stats": {"usage": 100 * 2**20, "stats": {"cache": 20 * 2**20}},
           "blkio_stats": {"io_service_bytes_recursive": [
               {"op": "Read", "value": 4096}, {"op": "Write", "value": 8192}]},
           "pids_stats": {"current": 7}}
    sample = stats_to_sample(doc)
    assert sample["cpu_user"] == 2.0 and sample["cpu_sys"] == 1.0
    assert sample["rss"] == 100 * 2**20 and sample["uss"] == 80 * 2**20
    assert sample["read_bytes"] == 4096 and sample["write_bytes"] == 8192
    assert sample["procs"] == 7
