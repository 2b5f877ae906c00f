"""The NFS-like FUSE volume: real mounts, real reads, real signals."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.services.nas import NasVolume, fuse_available, mount_entry
from harness.services.nasload import LoadModel, VolumeLoad

AVAILABLE, WHY = fuse_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"FUSE unavailable: {WHY}")
ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def backing(tmp_path):
    folder = tmp_path / "backing"
    folder.mkdir()
    (folder / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    for i in range(32):
        (folder / f"f{i:02d}.txt").write_bytes(os.urandom(4096 + i))
    return folder


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/mounts") as fh:
        return any(line.split()[1] == target for line in fh)


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _read_timed(path: Path, out: list[float]) -> None:
    started = time.perf_counter()
    with open(path, "rb") as fh:
        fh.read()
    out.append(time.perf_counter() - started)


def test_files_read_back_identical_and_unmount_leaves_nothing(backing, tmp_path):
    mnt = tmp_path / "mnt"
    volume = NasVolume(backing, mnt, latency_ms=1)
    assert volume.mount() == mnt
    pid = volume.pid
    assert mount_entry(mnt) is not None and psutil.pid_exists(pid)
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(backing))
    for name in os.listdir(backing):
        assert (mnt / name).read_bytes() == (backing / name).read_bytes()
    (mnt / "new.txt").write_text("written through the volume")
    assert (backing / "new.txt").read_text() == "written through the volume"
    volume.unmount()
    volume.unmount()  # idempotent
    assert not _mounted(mnt) and _gone(pid) and volume.pid is None


def test_per_file_latency_grows_with_concurrency(backing, tmp_path):
    files = sorted(backing.glob("f*.txt"))
    with NasVolume(backing, tmp_path / "mnt", latency_ms=10, slots=4) as volume:
        mnt = volume.mountpoint
        alone: list[float] = []
        for path in files:
            _read_timed(mnt / path.name, alone)
        crowded: list[float] = []
        threads = [threading.Thread(target=_read_timed, args=(mnt / path.name, crowded)) for path in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    mean_alone, mean_crowded = sum(alone) / len(alone), sum(crowded) / len(crowded)
    assert mean_alone >= 0.010  # at least one round trip per file
    assert mean_crowded > 2 * mean_alone, (mean_alone, mean_crowded)


def test_max_threads_really_caps_the_daemon(backing, tmp_path):
    """libfuse defaults to 10 workers and ignores a cap that does not reach its loop: measure it."""
    max_threads = 4
    files = sorted(backing.glob("f*.txt"))[:16]
    elapsed = {}
    for cap in (max_threads, 32):
        with NasVolume(backing, tmp_path / f"mnt{cap}", latency_ms=40, slots=64, max_threads=cap) as volume:
            handles = [open(volume.mountpoint / p.name, "rb", buffering=0) for p in files]
            started = time.perf_counter()
            threads = [threading.Thread(target=h.read, args=(100,)) for h in handles]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed[cap] = time.perf_counter() - started
            for h in handles:
                h.close()
    # 16 reads of 40 ms: ~4 rounds with 4 workers, ~1 round with 32.
    assert elapsed[max_threads] >= 3 * 0.040 and elapsed[32] < 2 * 0.040 + 0.05, elapsed


def test_an_exception_inside_with_still_unmounts(backing, tmp_path):
    mnt = tmp_path / "mnt"
    with pytest.raises(RuntimeError):
        with NasVolume(backing, mnt, latency_ms=1) as volume:
            pid = volume.pid
            raise RuntimeError("scenario failed")
    assert not _mounted(mnt) and _gone(pid)


def test_sigterm_to_the_daemon_unmounts(backing, tmp_path):
    mnt = tmp_path / "mnt"
    volume = NasVolume(backing, mnt, latency_ms=1)
    volume.mount()
    pid = volume.pid
    os.kill(pid, signal.SIGTERM)
    assert _wait(lambda: not _mounted(mnt) and _gone(pid))
    volume.unmount()


def _spawn_owner(backing: Path, mnt: Path, detach: bool) -> tuple[subprocess.Popen, int]:
    code = (
        "import sys, time; from pathlib import Path; from harness.services.nas import NasVolume\n"
        f"v = NasVolume(Path({str(backing)!r}), Path({str(mnt)!r}), latency_ms=1); v.mount(detach={detach})\n"
        "print(v.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return owner, int(owner.stdout.readline())


def test_a_killed_owner_does_not_leave_a_mount(backing, tmp_path):
    mnt = tmp_path / "mnt"
    owner, daemon = _spawn_owner(backing, mnt, detach=False)
    assert _mounted(mnt)
    owner.kill()  # no atexit, no __exit__: the daemon notices its owner is gone
    owner.wait()
    assert _wait(lambda: not _mounted(mnt) and _gone(daemon))


def test_a_stale_mount_from_a_crashed_run_is_cleaned(backing, tmp_path):
    mnt = tmp_path / "mnt"
    owner, daemon = _spawn_owner(backing, mnt, detach=True)
    owner.kill()
    owner.wait()
    os.kill(daemon, signal.SIGKILL)  # the daemon dies without unmounting
    assert _wait(lambda: _gone(daemon))
    assert _mounted(mnt)
    with pytest.raises(OSError):
        os.listdir(mnt)  # "Transport endpoint is not connected"
    with NasVolume(backing, mnt, latency_ms=1) as volume:
        assert sorted(os.listdir(volume.mountpoint)) == sorted(os.listdir(backing))
    assert not _mounted(mnt)


def _try_read(path: Path, errors: list[int], ok: list[str]) -> None:
    try:
        with open(path, "rb", buffering=0) as fh:
            fh.read()
        ok.append(path.name)
    except OSError as exc:
        errors.append(exc.errno)


def test_a_soft_mount_fails_queued_operations_with_eio_or_etimedout(backing, tmp_path):
    files = sorted(backing.glob("f*.txt"))[:12]
    with NasVolume(backing, tmp_path / "mnt", latency_ms=40, slots=1, choke_ms=0,
                   timeout_ms=150) as volume:
        errors: list[int] = []
        ok: list[str] = []
        _try_read(volume.mountpoint / files[0].name, errors, ok)
        assert errors == [] and ok, "alone, an operation is answered within timeo"
        threads = [threading.Thread(target=_try_read, args=(volume.mountpoint / p.name, errors, ok))
                   for p in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # 12 callers on one 40 ms slot: those queued past 150 ms give up, as `soft,timeo=` does.
    assert errors and set(errors) <= {errno.EIO, errno.ETIMEDOUT}, errors
    assert len(ok) >= 2


def test_too_many_handles_on_one_file_answer_ebusy(backing, tmp_path):
    with NasVolume(backing, tmp_path / "mnt", latency_ms=1, max_handles=2) as volume:
        path = volume.mountpoint / "f00.txt"
        first, second = open(path, "rb"), open(path, "rb")
        with pytest.raises(OSError) as busy:
            open(path, "rb")
        assert busy.value.errno == errno.EBUSY
        other = open(volume.mountpoint / "f01.txt", "rb")  # the limit is per file
        first.close()
        # A released handle frees its place; FUSE sends RELEASE after close() returns.
        deadline, third = time.monotonic() + 2.0, None
        while third is None:
            try:
                third = open(path, "rb")
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        for fh in (second, third, other):
            fh.close()


def test_service_time_grows_with_queue_depth_along_the_curve():
    model = LoadModel()  # the defaults: 12 ms unloaded, about 1.8 s at 200 outstanding
    assert model.service_s(1) == pytest.approx(0.012)
    assert model.service_s(201) == pytest.approx(1.8, rel=0.01)
    depths = [1, 10, 50, 100, 200]
    assert [model.service_s(d) for d in depths] == sorted(model.service_s(d) for d in depths)
    assert LoadModel(choke_ms=0).service_s(500) == pytest.approx(0.012)


def test_the_load_model_times_out_a_queued_operation_without_fuse():
    load = VolumeLoad(LoadModel(latency_ms=100, slots=1, choke_ms=0, timeout_ms=50))
    with pytest.raises(OSError) as late:
        with load.served():
            pass
    assert late.value.errno == errno.ETIMEDOUT and load.counts["etimedout"] == 1
