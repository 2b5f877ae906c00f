"""csv_ingest end to end on real services (small scale): every source in every mode through
the real runner reconciles; the api source keeps the suppliers' rate (their own log says so)
and never beats its bound; the NAS gets slower per file under concurrency; an interrupted or
killed run leaves no mount and no server; a dead database is one line and exit code 4; a
file's load is idempotent."""

from __future__ import annotations

import bisect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import median

import psutil
import pytest

from harness.modes import available_executors
from harness.services.nas import fuse_available, mount_entry
from harness.services.postgres import connect
from harness.workloads import copyceiling, csvgen, csvverify, pgload
from harness.workloads.csvgen import HEADER
from tests.runhelp import run_scenario

ROOT = Path(__file__).resolve().parents[1]
FUSE, FUSE_WHY = fuse_available()
SMOKE = {"scale": "smoke", "malformed_fraction": 0.5}


def available_modes() -> list[str]:
    """Every executor runnable here, and the capped hybrid on threads."""
    return available_executors() + ["grouped"]


def _failed_checks(run) -> list[str]:
    return [f"{c['cell_id']}: {v['name']}: expected {v['expected']}, got {v['actual']} ({v['detail']})"
            for c in run.cells for v in c["verify"] if not v["ok"]]


def _admitted_peak(log: Path, window: float = 1.0) -> dict[str, int]:
    """Most requests a supplier admitted (anything but 429) within any `window` seconds."""
    times: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry["supplier"] is not None and entry["status"] != 429:
            times.setdefault(entry["supplier"], []).append(entry["t"])
    peaks = {}
    for supplier, ts in times.items():
        ts.sort()
        peaks[supplier] = max(i + 1 - bisect.bisect_left(ts, t - window + 1e-3)
                              for i, t in enumerate(ts))
    return peaks


# ------------------------------------------------------------------ every source x mode
@pytest.mark.db
@pytest.mark.parametrize("source", ["local", "nas", "api"])
def test_every_source_every_mode_reconciles(postgres, tmp_path: Path, source: str) -> None:
    params = {**SMOKE, "source": source, "rate": 5.0, "request_log": tmp_path / "requests.jsonl"}
    modes = available_modes()
    run = run_scenario(tmp_path, "csv_ingest", modes, params)
    assert [c["mode"] for c in run.cells] == modes
    assert [c["status"] for c in run.cells] == ["ok"] * len(modes), [c["message"] for c in run.cells]
    assert not _failed_checks(run), _failed_checks(run)
    for cell in run.cells:
        names = {v["name"] for v in cell["verify"]}
        assert {"staging rows = valid rows expected", "every file accounted for",
                "every line accounted for", "no duplicate (file, line)"} <= names
        assert all(u["status"] == "ok" for u in run.units[cell["cell_id"]])
        assert cell["bound_s"] and cell["makespan_s"] >= cell["bound_s"], cell["cell_id"]
    source_note = run.cells[0]["verify"][-2 if source == "api" else -1]["actual"]
    if source == "nas":
        assert ("FUSE volume" if FUSE else "FUSE unavailable") in source_note, source_note
    if source == "api":
        assert all(any(v["name"].startswith("supplier rate") for v in c["verify"]) for c in run.cells)
        # The server's own log, read independently: a bucket of 5/s and burst 1 admits at
        # most 6 requests in any second.
        peaks = _admitted_peak(tmp_path / "requests.jsonl")
        assert peaks and max(peaks.values()) <= 5 + 1, peaks
        # files per supplier / rate (less the initial burst): (4 - 1) / 5 s
        assert all(c["bound_s"] >= 0.6 - 1e-9 for c in run.cells)


@pytest.mark.db
def test_without_fuse_the_nas_source_reads_the_local_folder(postgres, tmp_path: Path,
                                                             monkeypatch) -> None:
    # A machine without FUSE, as the stack sees it (the check runs when the volume starts).
    monkeypatch.setattr("harness.services.nas.fuse_available",
                        lambda: (False, "/dev/fuse is missing (test)"))
    run = run_scenario(tmp_path, "csv_ingest", ["serial"],
                       {**SMOKE, "source": "nas", "ceiling_rows": 0})
    assert not _failed_checks(run), _failed_checks(run)
    assert run.run["services"]["nas"]["available"] is False
    (note,) = [v["actual"] for v in run.cells[0]["verify"] if v["name"] == "source"]
    assert note == "local folder (FUSE unavailable: /dev/fuse is missing (test))"


# ---------------------------------------------------------------- NAS under concurrency
@pytest.mark.db
@pytest.mark.skipif(not FUSE, reason=f"FUSE unavailable: {FUSE_WHY}")
def test_nas_per_file_latency_rises_with_concurrency(postgres, tmp_path: Path) -> None:
    params = {"scale": "smoke", "source": "nas", "suppliers": 4, "files_per_supplier": 16,
              "rows_per_file": 20, "malformed_fraction": 0.0, "heavy_tail": False,
              "ceiling_rows": 0}
    run = run_scenario(tmp_path, "csv_ingest", ["serial", "threads"], params,
                       workers={"serial": 1, "threads": 32})
    assert not _failed_checks(run), _failed_checks(run)
    latency = {c["mode"]: median((u["end_ns"] - u["start_ns"]) / 1e6
                                 for u in run.units[c["cell_id"]]) for c in run.cells}
    print(f"\nNAS per-file latency (median): 1 worker {latency['serial']:.1f} ms, "
          f"32 workers {latency['threads']:.1f} ms")
    # 8 server slots shared by 32 callers: each operation queues behind ~3 others.
    assert latency["threads"] > 1.5 * latency["serial"], latency


# ------------------------------------------------------ interrupted or killed mid-run
def _run_processes(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(run_id in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.db
@pytest.mark.parametrize(("source", "sig"), [("nas", signal.SIGINT), ("api", signal.SIGINT),
                                             ("nas", signal.SIGKILL), ("api", signal.SIGKILL)])
def test_ctrl_c_or_crash_leaves_no_mount_and_no_server(postgres, tmp_path: Path, source: str,
                                                       sig: int) -> None:
    if source == "nas" and not FUSE:
        pytest.skip(f"FUSE unavailable: {FUSE_WHY}")
    # Slow enough that the run is surely mid-cell when the signal lands.
    cmd = [sys.executable, "-m", "harness", "run", "csv_ingest", "--param", "scale=smoke",
           "--param", f"source={source}", "--param", "nas_latency_ms=60", "--param", "rate=1",
           "--param", "ceiling_rows=0", "--modes", "serial", "--repeat", "3", "--no-warmup",
           "--no-progress", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        run_dir = _wait_for(lambda: next((tmp_path / "csv_ingest").glob("*/cells/*/units.jsonl"), None),
                            60, "the first cell").parents[2]
        run_id = run_dir.name
        mountpoint = ROOT / ".harness" / "mnt" / f"csv_ingest-{run_id}"
        service = "harness.services.nas" if source == "nas" else "harness.services.suppliers"
        _wait_for(lambda: [p for p in _run_processes(run_id) if service in " ".join(p.cmdline())],
                  20, f"the {source} service")
        if source == "nas":
            assert mount_entry(mountpoint) is not None
        time.sleep(0.5)
        os.kill(proc.pid, sig)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out
        assert "interrupted" in out
    # A killed harness runs no cleanup: its services watch their owner and go by themselves.
    # (The orphaned cell process itself ends at its next record, when the pipe is gone.)
    _wait_for(lambda: not [p for p in _run_processes(run_id) if "harness.services" in " ".join(p.cmdline())],
              15, f"no service of run {run_id} left: {[p.cmdline() for p in _run_processes(run_id)]}")
    assert mount_entry(mountpoint) is None
    _drop_schemas_of(postgres.dsn, run_id)  # a killed run never dropped its cell's schema


def _drop_schemas_of(dsn: str, run_id: str) -> None:
    suffix = run_id.rsplit("-", 1)[-1]
    with connect(dsn, autocommit=True) as conn:
        names = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                             (f"csv_ingest_{suffix}_%",)).fetchall()
        for (name,) in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# ------------------------------------------------------------------- a dead database
def test_dead_database_is_one_line_and_exit_4(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    env = dict(os.environ, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/test")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", "run", "csv_ingest", "--param",
                           "scale=smoke", "--param", "source=local", "--no-progress",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          timeout=60)
    elapsed = time.monotonic() - started
    errors = done.stderr.decode().strip().splitlines()
    assert done.returncode == 4, done.stderr
    assert len([e for e in errors if "error" in e.lower()]) == 1, errors
    assert f"127.0.0.1:{port}" in errors[-1] and "does not answer" in errors[-1]
    assert elapsed < 20


# ------------------------------------------------------------ idempotent file loads
GOOD = b"S01,S01-00001-%06d,SKU-000001,5,12.50,EUR,2024-03-01T12:34:56Z,Lyon,"


@pytest.mark.db
def test_a_file_loads_once_even_when_retried_or_raced(postgres, schema: str) -> None:
    data = HEADER + b"".join(GOOD % i + b"\n" for i in range(50))
    results = []

    def load() -> None:
        with connect(postgres.dsn, autocommit=True) as conn:
            results.append(pgload.load_file(conn, schema, "s01/a.csv", 1, data))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load()  # a re-run
    assert sorted(r.skipped for r in results) == [False, True, True, True, True]
    with connect(postgres.dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*), count(DISTINCT line), min(line), max(line) "
                            f"FROM {schema}.staging").fetchone()
    assert rows == (50, 50, 2, 51)


@pytest.mark.db
@pytest.mark.parametrize("neighbour", [b"", b"S01,x,SKU-9,five,1.00,EUR,2024-03-01T00:00:00Z,Lyon,"])
def test_the_rule_not_the_server_decides_with_or_without_a_bad_neighbour(
        postgres, schema: str, neighbour: bytes) -> None:
    """Values PostgreSQL's casts would take (+12, now, 12.345, no zone) are quarantined by
    the rule whether or not the file has another bad row."""
    doubtful = [(GOOD % 1).replace(b",5,", b",+12,"), (GOOD % 2).replace(b"Z,", b","),
                (GOOD % 3).replace(b"2024-03-01T12:34:56Z", b"now"),
                (GOOD % 4).replace(b"12.50", b"12.345")]
    data = HEADER + b"\n".join([GOOD % 0, *doubtful, *([neighbour] if neighbour else [])]) + b"\n"
    with connect(postgres.dsn, autocommit=True) as conn:
        result = pgload.load_file(conn, schema, "s01/b.csv", 2, data)
        quarantined = conn.execute(f"SELECT line, lines, reason, raw FROM {schema}.quarantine "
                                   "ORDER BY line").fetchall()
        staged = conn.execute(f"SELECT line FROM {schema}.staging ORDER BY line").fetchall()
        account = conn.execute(f"SELECT lines, rows, quarantined, quarantined_lines, "
                               f"skipped_header FROM {schema}.loaded_files").fetchone()
    assert staged == [(2,)] and result.rows == 1
    assert quarantined[:4] == [(3, 1, "non_numeric_quantity", doubtful[0]),
                               (4, 1, "timestamp_without_zone", doubtful[1]),
                               (5, 1, "bad_timestamp", doubtful[2]),
                               (6, 1, "price_scale", doubtful[3])]
    n = 4 + bool(neighbour)
    assert account == (2 + n, 1, n, n, 1)


# ------------------------------------------------------------ the rate check itself
def test_rate_check_replays_the_bucket(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"

    def write(times: list[float]) -> None:
        log.write_text("".join(json.dumps({"t": t, "supplier": "s01", "path": "/x", "status": 200})
                               + "\n" for t in times))

    write([100.0, 100.34, 100.68, 101.02])  # 3/s with burst 1: just within
    assert csvverify.rate_check(log, 3.0, 1.0, since=100.0).ok
    write([100.0, 100.1, 100.2])  # three in 0.2 s
    check = csvverify.rate_check(log, 3.0, 1.0, since=100.0)
    assert not check.ok and "lowest bucket level" in check.detail


# ------------------------------------------------------------------- the COPY ceiling
@pytest.mark.db
def test_ceiling_is_the_median_of_three_passes(postgres, tmp_path: Path) -> None:
    folder = csvgen.ensure_dataset(tmp_path, csvgen.Spec(suppliers=2, files_per_supplier=4,
                                                         rows_per_file=200, heavy_tail=False,
                                                         malformed_fraction=0.0))
    files = csvgen.sample_clean(folder, 10_000)
    ceiling = copyceiling.measure(postgres.dsn, folder, files, f"ceiling_test_{os.getpid()}",
                                  min_rows=40_000, levels=[1, 2])
    assert set(ceiling.passes) == {"1", "2"} and all(len(p) == 3 for p in ceiling.passes.values())
    for n, passes in ceiling.passes.items():
        # One tiny pass can come out under the loaders' own start-up on a loaded machine;
        # the median is what the ceiling uses, and it must be a real, positive time.
        assert median(passes) > 0
        assert ceiling.by_parallelism[n] == pytest.approx(ceiling.rows / median(passes))
    if ceiling.method == "psql \\copy":  # psql reads and sends every row: never free
        assert 0 < ceiling.client_cpu_per_row < 50e-6, ceiling.client_cpu_per_row
    else:
        assert ceiling.client_cpu_per_row is None
    with pytest.raises(RuntimeError, match="not measurable"):
        copyceiling._positive(0.0, 0.02, 1000)
