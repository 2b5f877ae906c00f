"""Supplier HTTP endpoints: a real aiohttp server with one token bucket per supplier, run as its own
process. Scenarios download with the clients in :mod:`harness.services.supplier_client`.

Routes: ``GET /health``, ``GET /suppliers`` (JSON list of ids), ``GET /suppliers/{sid}/files``
(JSON list of names), ``GET /suppliers/{sid}/files/{name}`` (the bytes). Data layout:
``DATA_DIR/<supplier id>/<file name>``, read on every request so files may be added after start.

Rate limit: listing and downloading a supplier each take one token from that supplier's bucket
(``rate`` tokens/s, capacity ``burst``, starting full). With no token the answer is 429 with a
fractional ``Retry-After`` in seconds (e.g. ``0.334``: the exact time until the next token,
rounded up to the millisecond). RFC 9110 allows only integer seconds there; a strict client must
round it up, which this module's clients do not need to. A request the bucket admits may still
get an injected 503 (probability ``error_rate``, seeded): the failed attempt used its token.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.services.children import child_env, log_tail, pid_alive, signal_group
from harness.services.errors import ServiceError

READY_TIMEOUT_S = 10.0


# ----------------------------------------------------------------------------------------- server
class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; starts full. ``rate <= 0`` means unlimited."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.updated = rate, float(capacity), float(capacity), now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be available."""
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class ServerConfig:
    """Options of one supplier server process (the CLI's arguments, typed)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 3.0
    burst: float = 1.0
    error_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0
    log: Path | None = None
    ready_file: Path | None = None
    owner_pid: int | None = None


class _Suppliers:
    """Request handlers; all state is touched from the event loop thread only, so no locks."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.buckets: dict[str, TokenBucket] = {}
        self.rng = random.Random(cfg.seed)
        self.log = open(cfg.log, "a", buffering=1, encoding="utf-8") if cfg.log else None  # line-buffered

    def record(self, t: float, sid: str | None, request: Any, status: int) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"t": t, "supplier": sid, "path": request.path, "status": status}) + "\n")

    def reply(self, request: Any, sid: str | None, status: int, body: Any = None, **headers: str) -> Any:
        from aiohttp import web

        # A gated request is logged at the instant its token was checked, so the log can be held
        # against the bucket's arithmetic; anything else at the time of the answer.
        self.record(request.get("t_gate", time.time()), sid, request, status)
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    def supplier_dir(self, sid: str) -> Path | None:
        folder = self.cfg.data_dir / sid
        return folder if not sid.startswith(".") and folder.is_dir() else None

    async def gate(self, request: Any, sid: str) -> Any:
        """Latency, then the bucket, then error injection; an error response, or None to serve."""
        if self.cfg.latency_ms > 0:
            # Deliberate: models the network/processing delay of a remote supplier (loopback has none
            # and the kernel here has no netem to add it).
            await asyncio.sleep(self.cfg.latency_ms / 1000.0)
        bucket = self.buckets.get(sid)
        now, request["t_gate"] = time.monotonic(), time.time()
        if bucket is None:
            bucket = self.buckets[sid] = TokenBucket(self.cfg.rate, self.cfg.burst, now)
        wait = bucket.take(now)
        if wait > 0:
            return self.reply(request, sid, 429, {"error": "rate limited"}, **{"Retry-After": f"{math.ceil(wait * 1000) / 1000:.3f}"})
        if self.cfg.error_rate > 0 and self.rng.random() < self.cfg.error_rate:
            return self.reply(request, sid, 503, {"error": "injected failure"})
        return None

    async def health(self, request: Any) -> Any:
        return self.reply(request, None, 200, {"status": "ok"})

    async def suppliers(self, request: Any) -> Any:
        ids = sorted(p.name for p in self.cfg.data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        return self.reply(request, None, 200, ids)

    async def files(self, request: Any) -> Any:
        sid = request.match_info["sid"]
        folder = self.supplier_dir(sid)
        if folder is None:
            return self.reply(request, sid, 404, {"error": f"no supplier {sid}"})
        refused = await self.gate(request, sid)
        if refused is not None:
            return refused
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        return self.reply(request, sid, 200, names)

    async def download(self, request: Any) -> Any:
        from aiohttp import web

        sid, name = request.match_info["sid"], request.match_info["name"]
        folder = self.supplier_dir(sid)
        path = folder / name if folder is not None and not name.startswith(".") else None
        if path is None or not path.is_file():
            return self.reply(request, sid, 404, {"error": f"no file {sid}/{name}"})
        refused = await self.gate(request, sid)
        if refused is not None:
            return refused
        self.record(request["t_gate"], sid, request, 200)
        return web.FileResponse(path)


def build_app(cfg: ServerConfig) -> Any:
    """The aiohttp application serving ``cfg.data_dir``."""
    from aiohttp import web

    handlers = _Suppliers(cfg)
    app = web.Application()
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/suppliers", handlers.suppliers)
    app.router.add_get("/suppliers/{sid}/files", handlers.files)
    app.router.add_get("/suppliers/{sid}/files/{name}", handlers.download)

    async def close_log(_: Any) -> None:
        if handlers.log is not None:
            handlers.log.close()

    app.on_cleanup.append(close_log)
    return app


def _write_ready(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)  # atomic: a reader never sees a half-written port


async def serve(cfg: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT (or until ``owner_pid`` exits)."""
    from aiohttp import web

    # shutdown_timeout: aiohttp's default (60 s) keeps serving a client that keeps its
    # keep-alive connection busy (429 retries), so a server whose owner died lingered.
    runner = web.AppRunner(build_app(cfg), access_log=None, handle_signals=False,
                           shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, backlog=1024)
    await site.start()
    port = int(runner.addresses[0][1])
    if cfg.ready_file is not None:
        _write_ready(cfg.ready_file, port)
    print(port, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    while not done.is_set():
        # The owner check keeps a killed harness from leaving this server behind.
        if cfg.owner_pid is not None and not pid_alive(cfg.owner_pid):
            break
        try:
            await asyncio.wait_for(done.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            pass
    await runner.cleanup()


def parse_args(argv: list[str] | None) -> ServerConfig:
    p = argparse.ArgumentParser(prog="harness serve suppliers", description="Serve supplier files over HTTP with per-supplier rate limits (429 + Retry-After).")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with one subfolder per supplier id, holding that supplier's files")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; keep it local)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 lets the OS pick one (see --ready-file)")
    p.add_argument("--rate", type=float, default=3.0, help="tokens per second refilled in each supplier's bucket; <= 0 disables the limit")
    p.add_argument("--burst", type=float, default=1.0, help="bucket capacity: requests a supplier accepts back to back")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability that an admitted request gets an injected 503")
    p.add_argument("--latency-ms", type=float, default=0.0, help="extra delay added to every supplier request (models a remote server)")
    p.add_argument("--seed", type=int, default=0, help="seed of the error-injection random generator")
    p.add_argument("--log", type=Path, help="append one JSON line per request: t, supplier, path, status")
    p.add_argument("--ready-file", type=Path, help="write the bound port here (atomically) once listening")
    p.add_argument("--owner-pid", type=int, help="exit when this process exits (used by SupplierServer)")
    a = p.parse_args(argv)
    if not a.data_dir.is_dir():
        p.error(f"--data-dir {a.data_dir} is not a folder; create it with one subfolder per supplier")
    return ServerConfig(a.data_dir.resolve(), a.host, a.port, a.rate, a.burst, a.error_rate, a.latency_ms, a.seed, a.log, a.ready_file, a.owner_pid)


def main(argv: list[str] | None = None) -> int:
    """Run the supplier server in the foreground (``harness serve suppliers``)."""
    cfg = parse_args(argv)
    try:
        asyncio.run(serve(cfg))
    except OSError as exc:
        print(f"supplier server could not listen on {cfg.host}:{cfg.port}: {exc}; pick another --port", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------- parent side
class SupplierServer:
    """Runs the supplier server as a child process in its own process group."""

    def __init__(self, data_dir: Path, rate: float = 3.0, burst: float = 1, error_rate: float = 0.0,
                 latency_ms: float = 0.0, log_path: Path | None = None, seed: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir, self.rate, self.burst, self.error_rate = Path(data_dir), rate, burst, error_rate
        self.latency_ms, self.log_path, self.seed, self.host = latency_ms, log_path, seed, host
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self.base_url: str | None = None

    @property
    def pid(self) -> int | None:
        """The server process id while it runs (sample it as a service process)."""
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def version() -> str:
        """The aiohttp version serving the requests (recorded with the run)."""
        import aiohttp

        return aiohttp.__version__

    def start(self) -> str:
        """Spawn the server, wait until it listens (10 s at most), return its base URL; idempotent."""
        if self._proc is not None and self._proc.poll() is None and self.base_url:
            return self.base_url
        self._tmp = Path(tempfile.mkdtemp(prefix="harness-suppliers-"))
        ready, stderr_path = self._tmp / "port", self._tmp / "stderr.log"
        cmd = [sys.executable, "-m", "harness.services.suppliers", "--data-dir", str(self.data_dir), "--host", self.host,
               "--port", "0", "--rate", str(self.rate), "--burst", str(self.burst), "--error-rate", str(self.error_rate),
               "--latency-ms", str(self.latency_ms), "--seed", str(self.seed), "--ready-file", str(ready),
               "--owner-pid", str(os.getpid())]
        if self.log_path is not None:
            cmd += ["--log", str(self.log_path)]
        with open(stderr_path, "wb") as stderr:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                          start_new_session=True, env=child_env())
        atexit.register(self.stop)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                tail = log_tail(stderr_path)
                self.stop()
                what = f"exited with code {code}" if code is not None else f"was not listening after {READY_TIMEOUT_S:.0f} s"
                raise ServiceError(f"supplier server {what}: {tail or 'no output'}; run `{' '.join(cmd[:3])} --help` to check the options")
            time.sleep(0.02)
        self.base_url = f"http://{self.host}:{int(ready.read_text())}"
        shutil.rmtree(self._tmp, ignore_errors=True)  # nothing left in /tmp even if we are SIGKILLed
        self._tmp = None
        return self.base_url

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 3 s; idempotent."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait(3.0)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self.base_url = None

    def __enter__(self) -> SupplierServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
