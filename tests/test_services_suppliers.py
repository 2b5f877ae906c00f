"""Supplier endpoints: a real server process, real HTTP, its own request log as the witness."""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp
import psutil
import pytest

from harness.services import ServiceError
from harness.services.supplier_client import FetchError, FetchStats, afetch, fetch
from harness.services.suppliers import SupplierServer, main


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "suppliers"
    for n, sid in enumerate(("s01", "s02", "s03")):
        folder = root / sid
        folder.mkdir(parents=True)
        for i in range(3):
            (folder / f"f{i}.csv").write_bytes(os.urandom(1000 * (n + 1) + i))
    return root


def _log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_bucket_respected(times: list[float], rate: float, burst: float) -> None:
    """In any window [t_i, t_j], admitted requests <= burst + rate * (t_j - t_i) (+1 ms of clock slack)."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i] + 0.001) + 1e-9, (i, j, times[i], times[j])


def test_routes_serve_the_data_dir(data_dir, tmp_path):
    with SupplierServer(data_dir, rate=0, log_path=tmp_path / "log.jsonl") as server:
        stats = FetchStats()
        base = server.base_url
        assert base.startswith("http://127.0.0.1:")
        assert json.loads(fetch(f"{base}/health", stats=stats)) == {"status": "ok"}
        assert json.loads(fetch(f"{base}/suppliers", stats=stats)) == ["s01", "s02", "s03"]
        assert json.loads(fetch(f"{base}/suppliers/s02/files", stats=stats)) == ["f0.csv", "f1.csv", "f2.csv"]
        assert fetch(f"{base}/suppliers/s02/files/f1.csv", stats=stats) == (data_dir / "s02" / "f1.csv").read_bytes()
        with pytest.raises(FetchError) as caught:
            fetch(f"{base}/suppliers/s02/files/missing.csv", stats=stats)
        assert caught.value.attempts == 1 and "404" in str(caught.value)  # not retried
        assert stats.attempts == 5 and stats.throttled == 0
        assert SupplierServer.version() == aiohttp.__version__
    statuses = [(r["path"], r["status"]) for r in _log(tmp_path / "log.jsonl")]
    assert ("/suppliers/s02/files/missing.csv", 404) in statuses and len(statuses) == 5


def test_concurrent_async_clients_never_beat_the_bucket(data_dir, tmp_path):
    rate, burst, log = 5.0, 1, tmp_path / "log.jsonl"
    url_of = lambda base, i: f"{base}/suppliers/s01/files/f{i % 3}.csv"  # noqa: E731

    async def download_all(base: str, stats: FetchStats) -> list[bytes]:
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(afetch(session, url_of(base, i), max_attempts=200, stats=stats) for i in range(30)))

    with SupplierServer(data_dir, rate=rate, burst=burst, log_path=log) as server:
        stats = FetchStats()
        started = time.monotonic()
        bodies = asyncio.run(download_all(server.base_url, stats))
        elapsed = time.monotonic() - started
    assert all(body == (data_dir / "s01" / f"f{i % 3}.csv").read_bytes() for i, body in enumerate(bodies))
    records = [r for r in _log(log) if r["supplier"] == "s01"]
    served = [r["t"] for r in records if r["status"] == 200]
    assert len(served) == 30
    _assert_bucket_respected(served, rate, burst)
    assert elapsed >= (30 - burst) / rate - 0.05  # the theoretical lower bound holds
    throttled = sum(r["status"] == 429 for r in records)
    assert throttled > 0 and stats.throttled == throttled and stats.attempts == 30 + throttled


def test_sync_client_waits_exactly_as_told(data_dir, tmp_path):
    rate, log = 4.0, tmp_path / "log.jsonl"
    with SupplierServer(data_dir, rate=rate, burst=1, log_path=log) as server:
        stats = FetchStats()
        started = time.monotonic()
        for i in range(3):
            fetch(f"{server.base_url}/suppliers/s03/files/f{i}.csv", stats=stats)
        elapsed = time.monotonic() - started
    # One 429 per download after the first: the client slept Retry-After and then got the token,
    # never retrying early (which would show as more 429s) nor much later than needed.
    assert stats.throttled == 2 and stats.attempts == 5
    assert 2 / rate - 0.01 <= elapsed < 2 / rate + 0.5
    _assert_bucket_respected([r["t"] for r in _log(log) if r["status"] == 200], rate, 1)


def test_injected_errors_are_retried(data_dir, tmp_path):
    log = tmp_path / "log.jsonl"
    with SupplierServer(data_dir, rate=0, error_rate=0.3, seed=7, log_path=log) as server:
        stats = FetchStats()
        for i in range(20):
            assert fetch(f"{server.base_url}/suppliers/s02/files/f{i % 3}.csv", stats=stats)
    failures = sum(r["status"] == 503 for r in _log(log))
    assert failures > 0 and stats.server_errors == failures and stats.attempts == 20 + failures


def test_retries_give_up_after_max_attempts(data_dir):
    with SupplierServer(data_dir, rate=0, error_rate=1.0) as server:
        stats = FetchStats()
        with pytest.raises(FetchError) as caught:
            fetch(f"{server.base_url}/suppliers/s01/files/f0.csv", max_attempts=3, stats=stats)
    assert caught.value.attempts == 3 and "503" in str(caught.value) and stats.server_errors == 3


def test_stop_leaves_no_process(data_dir):
    server = SupplierServer(data_dir)
    server.start()
    pid = server.pid
    assert psutil.pid_exists(pid)
    server.stop()
    server.stop()  # idempotent
    assert not psutil.pid_exists(pid) and server.pid is None


def test_a_server_that_cannot_start_says_why(tmp_path):
    with pytest.raises(ServiceError) as caught:
        SupplierServer(tmp_path / "missing").start()
    assert "--data-dir" in str(caught.value) and "\n" not in str(caught.value)


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data-dir", "--host", "--port", "--rate", "--burst", "--error-rate", "--latency-ms", "--seed", "--log", "--ready-file"):
        assert option in out


def test_a_429_is_waited_on_as_asked_not_counted_as_a_failed_attempt(data_dir):
    """One attempt allowed for failures, yet a throttled download still succeeds: the 429
    said when to come back. The waits are what a 429 spends, and they run out too."""
    with SupplierServer(data_dir, rate=2, burst=1) as server:  # a token each 0.5 s
        url = f"{server.base_url}/suppliers/s01/files/f0.csv"
        fetch(url, stats=FetchStats())  # takes the bucket's one token
        stats = FetchStats()
        assert fetch(url, max_attempts=1, stats=stats)
        assert stats.throttled >= 1 and stats.attempts == stats.throttled + 1
        with pytest.raises(FetchError) as caught:
            fetch(url, max_attempts=50, max_wait_s=0.0, stats=FetchStats())
    assert "HTTP 429" in str(caught.value) and caught.value.attempts == 1
