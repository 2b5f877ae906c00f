"""The NFS-like volume: a FUSE passthrough (mfusepy on libfuse3) that adds per-operation latency and
serves at most ``slots`` operations at once, so per-call latency grows with concurrency as on a
real NAS; under load it chokes (service time grows with queue depth), a soft mount times out
(EIO/ETIMEDOUT) and too many handles on one file answer EBUSY (:mod:`harness.services.nasload`).
The page cache would hide all of it, so files are opened with ``direct_io``.

``python -m harness.services.nas mount BACKING MOUNTPOINT`` runs the daemon in the foreground and
unmounts cleanly on SIGTERM/SIGINT; ``NasVolume`` runs it as a child process for the harness.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness.services.children import child_env, log_tail, pid_alive, signal_group
from harness.services.errors import ServiceError
from harness.services.mounts import (FSNAME, _clear_stale_mount, _run_quiet, force_unmount,  # noqa: F401
                                     mount_entry)
from harness.services.nasload import LoadModel, VolumeLoad

MOUNT_TIMEOUT_S = 10.0
_INSTALL_HINT = "pip install mfusepy (and apt-get install fuse3)"


def _mfusepy() -> Any:
    """Import mfusepy lazily, on libfuse3 (mfusepy prefers libfuse2 when both are installed)."""
    if not os.environ.get("FUSE_LIBRARY_PATH"):
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except ImportError as exc:
        raise ServiceError(f"the NFS-like volume needs mfusepy ({exc}); fix: {_INSTALL_HINT}") from exc
    except (OSError, AttributeError) as exc:  # libfuse missing or of an unusable version
        raise ServiceError(f"mfusepy cannot load libfuse3 ({exc}); fix: apt-get install fuse3") from exc
    return mfusepy


def fuse_available() -> tuple[bool, str]:
    """Whether a FUSE volume can be mounted here, and why not (with the fix) when it cannot."""
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse is missing (no FUSE in this kernel or container); fix: modprobe fuse, or run the container with --device /dev/fuse --cap-add SYS_ADMIN"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return False, f"/dev/fuse cannot be opened ({exc.strerror}); fix: run as root or as a user allowed to use FUSE"
    if shutil.which("fusermount3") is None:
        return False, "fusermount3 is not on PATH; fix: apt-get install fuse3"
    if ctypes.util.find_library("fuse3") is None:
        return False, "libfuse3 is not installed; fix: apt-get install fuse3"
    try:
        mfusepy = _mfusepy()
    except ServiceError as exc:
        return False, str(exc)
    version = (mfusepy.fuse_version_major, mfusepy.fuse_version_minor)
    if version[0] != 3:
        return False, f"mfusepy loaded libfuse {version[0]}.{version[1]}, not libfuse3; fix: apt-get install fuse3"
    return True, f"FUSE ready (libfuse {version[0]}.{version[1]})"


def _operations(mfusepy: Any, backing: str, model: LoadModel) -> Any:
    """Build the passthrough operations object (its class needs the lazily imported mfusepy).

    mfusepy wires every attribute named like a FUSE operation as a callback, so private state uses
    names no operation has (``self.lock`` would shadow the ``lock`` operation).
    """

    class LatencyPassthrough(mfusepy.Operations):
        use_ns = True  # integer nanosecond timestamps (mfusepy deprecates float seconds)

        def __init__(self) -> None:
            self._backing = backing
            self._load = VolumeLoad(model)

        def _real(self, path: str) -> str:
            return os.path.join(self._backing, path.lstrip("/"))

        def _served(self, io: Any, *args: Any) -> Any:
            # One "server slot" is held for the round trip, then the real I/O runs: with more
            # callers than slots they queue, as on a busy NAS. The delay is modelled (loopback
            # has none and this kernel has no netem) and grows with the queue depth.
            with self._load.served():
                return io(*args)

        def _opened(self, path: str, *args: Any) -> int:
            self._load.hold(path)  # EBUSY past max_handles on one file
            try:
                return self._served(os.open, self._real(path), *args)
            except BaseException:
                self._load.drop(path)
                raise

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            st = self._served(os.lstat, self._real(path))
            keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino", "st_dev", "st_blocks")
            attrs = {k: getattr(st, k) for k in keys}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return attrs

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *self._served(os.listdir, self._real(path))]

        def readlink(self, path: str) -> str:
            return self._served(os.readlink, self._real(path))

        def open(self, path: str, flags: int) -> int:
            return self._opened(path, flags)

        def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
            return self._opened(path, flags | os.O_CREAT, mode)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return self._served(os.pread, fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return self._served(os.pwrite, fh, data, offset)

        def truncate(self, path: str, length: int, fh: Any = None) -> int:
            self._served(os.truncate, self._real(path), length)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            self._served(os.fdatasync if datasync else os.fsync, fh)
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            self._load.drop(path)
            return 0

        def unlink(self, path: str) -> int:
            self._served(os.unlink, self._real(path))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            self._served(os.mkdir, self._real(path), mode)
            return 0

        def rmdir(self, path: str) -> int:
            self._served(os.rmdir, self._real(path))
            return 0

        def rename(self, old: str, new: str) -> int:
            self._served(os.rename, self._real(old), self._real(new))
            return 0

        def chmod(self, path: str, mode: int) -> int:
            self._served(os.chmod, self._real(path), mode)
            return 0

        def utimens(self, path: str, times: Any = None) -> int:
            if times is None:
                self._served(os.utime, self._real(path))
            else:  # (atime, mtime) in nanoseconds, because use_ns
                self._served(lambda: os.utime(self._real(path), ns=tuple(int(t) for t in times)))
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(self._real(path))
            keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")
            return {k: getattr(sv, k) for k in keys}

    return LatencyPassthrough()


# ----------------------------------------------------------------------------------------- daemon
# fuse_main_real's return codes (libfuse 3 lib/helper.c); 8 means the serving loop ended with an
# error, which is how it reports being stopped by a signal.
_FUSE_MAIN_ERRORS = {1: "invalid option", 2: "no mountpoint", 3: "setup failed", 4: "mounting failed",
                     5: "daemonize failed", 6: "signal handlers failed", 7: "loop config failed"}

def _watch(mountpoint: Path, ready_file: Path | None, owner_pid: int | None) -> None:
    # Block the stop signals in this thread: libfuse's loop only notices a stop when the signal
    # interrupts the main thread's wait (its workers block signals too). Linux usually picks the
    # main thread anyway; this makes it certain.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    while mount_entry(mountpoint) is None:
        time.sleep(0.02)
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, ready_file)
    while owner_pid is not None:  # a killed owner must not leave a mounted volume behind
        if not pid_alive(owner_pid):
            os.kill(os.getpid(), signal.SIGTERM)  # libfuse's handler exits the loop and unmounts
            return
        time.sleep(0.5)


def run_daemon(backing: Path, mountpoint: Path, model: LoadModel, max_threads: int,
               ready_file: Path | None = None, owner_pid: int | None = None) -> int:
    """Mount and serve in the foreground until SIGTERM/SIGINT or an external unmount."""
    mfusepy = _mfusepy()
    backing, mountpoint = backing.resolve(), mountpoint.absolute()  # libfuse changes directory to /
    if not backing.is_dir():
        raise ServiceError(f"backing folder {backing} does not exist; create it or pass another one")
    _clear_stale_mount(mountpoint)
    try:
        mountpoint.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"mountpoint {mountpoint} cannot be created ({exc.strerror}); pass a writable folder") from exc
    ops = _operations(mfusepy, str(backing), model)
    threading.Thread(target=_watch, args=(mountpoint, ready_file, owner_pid), daemon=True).start()
    options: dict[str, Any] = {"foreground": True, "direct_io": True, "fsname": FSNAME}
    if (mfusepy.fuse_version_major, mfusepy.fuse_version_minor) >= (3, 12):
        # libfuse caps its worker pool at 10 threads unless told; measured: max_threads=64 lets 32
        # concurrent reads run at once, 8 caps them at 8. max_idle_threads (same value) keeps the
        # workers alive and silences libfuse's bogus "invalid max threads value 4294967295".
        options.update(max_threads=max_threads, max_idle_threads=max_threads)
    try:
        mfusepy.FUSE(ops, str(mountpoint), **options)
    except RuntimeError as exc:
        code = exc.args[0] if exc.args else None
        if code == 8:  # the loop ended on SIGTERM/SIGINT; libfuse has unmounted: a clean stop
            return 0
        what = _FUSE_MAIN_ERRORS.get(code, f"fuse_main_real returned {code}")
        raise ServiceError(f"libfuse could not serve {mountpoint} ({what}); check the mountpoint and that FUSE works") from exc
    return 0


# ------------------------------------------------------------------------------------ parent side
class NasVolume:
    """Mounts ``backing`` at ``mountpoint`` through the latency-adding FUSE daemon (a child process
    in its own process group). Unmounts on ``unmount()``, on leaving ``with``, and at exit."""

    def __init__(self, backing: Path, mountpoint: Path, latency_ms: float = 12.0, slots: int = 8, max_threads: int = 64,
                 **load: Any) -> None:
        """``load``: the rest of :class:`~harness.services.nasload.LoadModel` (choke_ms, choke_depth,
        exponent, timeout_ms, max_handles)."""
        self.backing, self.mountpoint = Path(backing).resolve(), Path(mountpoint).absolute()
        self.latency_ms, self.slots, self.max_threads = latency_ms, slots, max_threads
        self.model = LoadModel(latency_ms=latency_ms, slots=slots, **load)
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def pid(self) -> int | None:
        """The daemon's pid while mounted (sample its CPU and I/O as a service process)."""
        return self._proc.pid if self._proc is not None else None

    def mount(self, *, detach: bool = False) -> Path:
        """Start the daemon and wait (10 s at most) until the volume answers; idempotent.

        ``detach=True`` leaves it running after this process exits (``harness nas mount --background``).
        """
        if self._proc is not None and self._proc.poll() is None and mount_entry(self.mountpoint):
            return self.mountpoint
        ok, why = fuse_available()
        if not ok:
            raise ServiceError(why)
        _clear_stale_mount(self.mountpoint)
        self._tmp = Path(tempfile.mkdtemp(prefix="harness-nas-"))
        ready, log = self._tmp / "ready", self._tmp / "daemon.log"
        cmd = [sys.executable, "-m", "harness.services.nas", "mount", str(self.backing), str(self.mountpoint),
               *_model_args(self.model), "--max-threads", str(self.max_threads), "--ready-file", str(ready)]
        if not detach:
            cmd += ["--owner-pid", str(os.getpid())]
        with open(log, "wb") as stderr:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                          start_new_session=True, env=child_env())
        if not detach:
            atexit.register(self.unmount)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not (ready.exists() and self._answers()):
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                tail = log_tail(log)
                self.unmount()
                what = f"exited with code {code}" if code is not None else f"did not answer within {MOUNT_TIMEOUT_S:.0f} s"
                raise ServiceError(f"NAS volume daemon {what}: {tail or 'no output'}; check that FUSE works (harness.services.nas.fuse_available)")
            time.sleep(0.02)
        # The daemon keeps writing to its (now unlinked) log; removing the folder now means even a
        # SIGKILLed owner leaves nothing in /tmp.
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
        return self.mountpoint

    def _answers(self) -> bool:
        try:
            os.listdir(self.mountpoint)
            return mount_entry(self.mountpoint) is not None
        except OSError:
            return False

    def unmount(self) -> None:
        """Unmount and make sure the daemon is gone; idempotent."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.unmount)
        if proc is None:
            return
        if mount_entry(self.mountpoint) is not None:
            _run_quiet(["fusermount3", "-u", str(self.mountpoint)])  # the daemon's loop ends with it
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:  # busy mount: SIGTERM makes libfuse detach it lazily
            for sig in (signal.SIGTERM, signal.SIGKILL):
                signal_group(proc.pid, sig)
                try:
                    proc.wait(3.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
        force_unmount(self.mountpoint)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> NasVolume:
        self.mount()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unmount()


# -------------------------------------------------------------------------------------------- CLI
_MODEL_FLAGS = (("latency_ms", float, "delay per operation unloaded (open, read, getattr, readdir, ...)"),
                ("slots", int, "operations the modelled server handles at once; more callers queue"),
                ("choke_ms", float, "service time at --choke-depth outstanding operations (<= latency: no choking)"),
                ("choke_depth", int, "outstanding operations at which service takes --choke-ms"),
                ("exponent", float, "shape of the curve between the two (2 = quadratic)"),
                ("timeout_ms", float, "soft mount timeo: an operation unanswered this long fails EIO/ETIMEDOUT (0 = hard)"),
                ("max_handles", int, "handles one file may have open at once before EBUSY (0 = no limit)"))


def _model_args(model: LoadModel) -> list[str]:
    return [arg for name, _, _ in _MODEL_FLAGS for arg in ("--" + name.replace("_", "-"), str(getattr(model, name)))]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness nas", description="The NFS-like FUSE volume: passthrough with per-operation latency and bounded server slots.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mount", help="mount BACKING at MOUNTPOINT (foreground daemon unless --background)")
    m.add_argument("backing", type=Path, help="real folder whose files the volume serves")
    m.add_argument("mountpoint", type=Path, help="where the volume appears (created if missing)")
    for name, kind, text in _MODEL_FLAGS:
        m.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(LoadModel(), name), help=text)
    m.add_argument("--max-threads", type=int, default=64, help="libfuse worker threads (its default of 10 would cap concurrency)")
    m.add_argument("--ready-file", type=Path, help="write the daemon pid here once mounted")
    m.add_argument("--owner-pid", type=int, help="unmount and exit when this process exits")
    m.add_argument("--background", action="store_true", help="start the daemon detached, wait until mounted, return")
    u = sub.add_parser("unmount", help="unmount MOUNTPOINT (fusermount3 -u, lazy fallbacks)")
    u.add_argument("mountpoint", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    """``harness nas mount|unmount``."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "unmount":
            if force_unmount(args.mountpoint.absolute()):
                return 0
            print(f"{args.mountpoint} is still mounted; close the files open on it and retry", file=sys.stderr)
            return 1
        model = LoadModel(**{name: getattr(args, name) for name, _, _ in _MODEL_FLAGS})
        if args.background:
            load = {k: v for k, v in vars(model).items() if k not in ("latency_ms", "slots")}
            volume = NasVolume(args.backing, args.mountpoint, model.latency_ms, model.slots, args.max_threads, **load)
            volume.mount(detach=True)
            print(f"mounted {volume.mountpoint} (daemon pid {volume.pid}); unmount with: harness nas unmount {volume.mountpoint}")
            return 0
        return run_daemon(args.backing, args.mountpoint, model, args.max_threads, args.ready_file, args.owner_pid)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
