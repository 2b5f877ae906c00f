"""Clients of the supplier endpoints: download a file, counting every 429 and retry.

Both obey ``Retry-After`` on 429 (never earlier than asked, with a little jitter so a herd
of clients splits up), back off exponentially with jitter on 5xx and broken connections,
and raise :class:`FetchError` after ``max_attempts`` failed attempts (5xx, broken
connections) or once the waits 429s asked for add up past ``max_wait_s``. :func:`fetch` is synchronous (one
keep-alive ``http.client`` connection per thread); :func:`afetch` uses an aiohttp session.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import os
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass
class FetchStats:
    """What one download (or a group of them) cost: attempts, 429s, 5xx and connection failures."""

    attempts: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0


class FetchError(Exception):
    """A download failed for good: a status that retrying cannot fix, or its retries used up."""

    def __init__(self, url: str, last: str, attempts: int) -> None:
        self.url, self.last, self.attempts = url, last, attempts
        super().__init__(f"GET {url} failed after {attempts} attempt(s); last outcome: {last}")


def _retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:  # the HTTP-date form
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return 1.0
    return min(max(seconds, 0.0), 60.0)


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter for 5xx and broken connections: ~50 ms, 100 ms, ... <= 2 s."""
    base = min(2.0, 0.05 * 2 ** (attempt - 1))
    return base / 2 + random.uniform(0, base / 2)


MAX_THROTTLED_WAIT_S = 120.0  # how long a download waits on 429s in all, as asked


class _Retries:
    """When a download gives up. A 429 is the server saying when to come back, not a
    failure: counted as one, a supplier's three requests racing for each new token starved
    the unlucky one after 20 lost races in five seconds ((2/3)^20 a file: about one file in
    eight article runs). So failures count against ``max_attempts`` and 429s against the
    time they asked to wait."""

    def __init__(self, max_attempts: int, max_wait_s: float) -> None:
        self.max_attempts, self.max_wait_s = max_attempts, max_wait_s
        self.failures, self.waited = 0, 0.0

    def allow(self, throttled: bool, delay: float) -> bool:
        """Record one unsuccessful attempt; True when another is worth making."""
        if throttled:
            self.waited += delay
            return self.waited <= self.max_wait_s
        self.failures += 1
        return self.failures < self.max_attempts


def _next_delay(url: str, status: int, retry_after: str | None, attempt: int, stats: FetchStats) -> float:
    """Count the failed attempt and say how long to wait; raise FetchError when retrying is pointless."""
    if status == 429:
        stats.throttled += 1
        wait = _retry_after(retry_after)
        return wait + random.uniform(0, 0.05 * wait)  # never earlier than asked; a little jitter splits herds
    if status >= 500:
        stats.server_errors += 1
        return _backoff(attempt)
    raise FetchError(url, f"HTTP {status}", attempt)


async def afetch(session: Any, url: str, *, max_attempts: int = 20, stats: FetchStats,
                 max_wait_s: float = MAX_THROTTLED_WAIT_S) -> bytes:
    """GET ``url`` with an ``aiohttp.ClientSession``, retrying 429 (after Retry-After), 5xx and
    broken connections (backoff with jitter); FetchError when :class:`_Retries` gives up."""
    import aiohttp

    retries, attempt = _Retries(max_attempts, max_wait_s), 0
    while True:  # until a body, or FetchError
        attempt += 1
        stats.attempts += 1
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return await resp.read()
                status, header = resp.status, resp.headers.get("Retry-After")
                await resp.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
            stats.connection_errors += 1
            last, delay, throttled = type(exc).__name__, _backoff(attempt), False
        else:
            last, delay = f"HTTP {status}", _next_delay(url, status, header, attempt, stats)
            throttled = status == 429
        if not retries.allow(throttled, delay):
            raise FetchError(url, last, attempt)
        await asyncio.sleep(delay)


_local = threading.local()


def _connection(host: str, port: int, timeout: float) -> http.client.HTTPConnection:
    """One keep-alive connection per thread and server; dropped after a fork (never share sockets)."""
    if getattr(_local, "pid", None) != os.getpid():
        _local.pid, _local.conns = os.getpid(), {}
    conn = _local.conns.get((host, port))
    if conn is None:
        conn = _local.conns[(host, port)] = http.client.HTTPConnection(host, port, timeout=timeout)
    return conn


def _get_once(conn: http.client.HTTPConnection, target: str) -> tuple[int, str | None, bytes]:
    reused = conn.sock is not None
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        conn.close()
        if not reused:
            raise
        conn.request("GET", target)  # the server closed an idle keep-alive connection: not a failure
        resp = conn.getresponse()
    body = resp.read()
    if resp.will_close:
        conn.close()
    return resp.status, resp.getheader("Retry-After"), body


def fetch(url: str, *, max_attempts: int = 20, stats: FetchStats, timeout: float = 30.0,
          max_wait_s: float = MAX_THROTTLED_WAIT_S) -> bytes:
    """Blocking twin of :func:`afetch` on the standard library (one connection per thread)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"fetch() takes http:// URLs, got {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    retries, attempt = _Retries(max_attempts, max_wait_s), 0
    while True:  # until a body, or FetchError
        attempt += 1
        stats.attempts += 1
        conn = _connection(parts.hostname, parts.port or 80, timeout)
        try:
            status, header, body = _get_once(conn, target)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            stats.connection_errors += 1
            last, delay, throttled = type(exc).__name__, _backoff(attempt), False
        else:
            if status == 200:
                return body
            last, delay = f"HTTP {status}", _next_delay(url, status, header, attempt, stats)
            throttled = status == 429
        if not retries.allow(throttled, delay):
            raise FetchError(url, last, attempt)
        time.sleep(delay)

