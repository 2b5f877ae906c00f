"""The COPY ceiling: how fast this PostgreSQL server ingests this data with nothing in between.

``psql \\copy`` of the clean files (one ``\\copy`` per file, each its own transaction, as the
pipeline commits per file) into a table with the staging table's data columns, run by 1, 2,
4, ... parallel psql processes up to the machine's cores (on 2 cores: one and two); the
ceiling is the best rate. More loaders than cores cannot make a CPU-bound server faster,
and fewer would let a mode with many connections beat its "bound". Where psql is not
installed, the same bytes go through psycopg's raw ``COPY ... FROM STDIN`` instead, and the
result says so.

The timer must cover loading, not process start-up: one untimed pass warms the caches and
the table, and the time the same loaders take to start, connect and exit with nothing to
load (median of :data:`PASSES` empty runs) is subtracted. Each loader count is timed
:data:`PASSES` times into an emptied table and its rate is the median pass: a single pass
on a shared machine swings by a third, best-of picks the luckiest. A pass no longer than
start-up cannot be a rate and raises instead of dividing by almost nothing. Measured once
per run, in the scenario's ``prepare``.

The psql processes' own CPU time (user + system, from the reaped children's rusage, their
start-up's subtracted likewise) is kept per row: what the client side of a load costs at
its least, to set a pipeline's client CPU per row against (``make perf`` prints both).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from harness.services.postgres import connect
from harness.workloads.csvgen import FileExpectation
from harness.workloads.csvtables import ceiling_ddl

PSQL_TIMEOUT_S = 900
WARMUP_FILES = 5
PASSES = 3  # timed passes per loader count; the median is the rate


@dataclass
class Ceiling:
    """The measured ceiling and how it was measured."""

    rows_per_s: float
    rows: int
    files: int                           # \copy commands (a small data set is loaded repeatedly)
    method: str                          # "psql \\copy" or "psycopg raw COPY (no psql)"
    by_parallelism: dict[str, float] = field(default_factory=dict)  # "1"/"2" -> rows/s
    passes: dict[str, list[float]] = field(default_factory=dict)    # "1"/"2" -> seconds
    # psql's CPU seconds per row loaded (median pass, start-up's subtracted); None without psql
    client_cpu_per_row: float | None = None


def _quoted_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _psql_runs(psql: str, dsn: str, table: str, parts: list[list[Path]]) -> None:
    procs = []
    for part in parts:
        script = "".join(f"\\copy {table} FROM {_quoted_path(p)} WITH (FORMAT csv, HEADER)\n"
                         for p in part)
        proc = subprocess.Popen([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append((proc, script.encode()))
    errors: dict[int, bytes] = {}

    def feed(i: int, proc: subprocess.Popen, script: bytes) -> None:
        try:
            errors[i] = proc.communicate(script, PSQL_TIMEOUT_S)[1] or b""
        except subprocess.TimeoutExpired:  # said below, in the caller's thread
            proc.kill()
            proc.wait()
            errors[i] = f"timed out after {PSQL_TIMEOUT_S} s".encode()

    # Every psql is fed from its own thread, so they all run at once.
    threads = [threading.Thread(target=feed, args=(i, proc, script))
               for i, (proc, script) in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (proc, _) in enumerate(procs):
        if proc.returncode != 0:
            raise RuntimeError(f"psql \\copy failed (exit {proc.returncode}): "
                               f"{errors.get(i, b'').decode(errors='replace').strip()[:200]}")


def _raw_runs(dsn: str, table: str, parts: list[list[Path]]) -> None:
    errors: list[BaseException] = []

    def one(part: list[Path]) -> None:
        try:
            with connect(dsn, autocommit=True) as conn:
                statement = f"COPY {table} FROM STDIN (FORMAT csv, HEADER)"
                for path in part:
                    with conn.cursor().copy(statement) as copy:
                        copy.write(path.read_bytes())
        except BaseException as exc:  # surfaced below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(part,)) for part in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def parallelism_levels(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... loaders up to the cores (at least 1 and 2)."""
    cores = max(2, cores or os.cpu_count() or 2)
    levels = [1]
    while levels[-1] * 2 <= cores:
        levels.append(levels[-1] * 2)
    return levels


def measure(dsn: str, folder: Path, files: list[FileExpectation], schema: str,
            min_rows: int = 0, levels: list[int] | None = None) -> Ceiling:
    """Time ``levels`` parallel loaders of ``files`` (clean ones) into a scratch table.

    With fewer than ``min_rows`` rows the files are loaded over again until there are that
    many: a ceiling is a steady rate, not the startup of psql and its connection.
    """
    rounds = 1
    per_round = sum(f.rows for f in files)
    if per_round and per_round < min_rows:
        rounds = -(-min_rows // per_round)
    paths = [Path(folder) / f.name for f in files] * rounds
    rows = per_round * rounds
    psql = shutil.which("psql")
    method = "psql \\copy" if psql else "psycopg raw COPY (psql not installed)"
    ident = sql.Identifier(schema)
    table = f'"{schema}".ceiling'

    def load(parts: list[list[Path]]) -> tuple[float, float]:
        """(seconds, CPU seconds of the psql processes) of one load."""
        started, cpu = time.perf_counter(), _children_cpu()
        if psql:
            _psql_runs(psql, dsn, table, parts)
        else:
            _raw_runs(dsn, table, parts)
        return time.perf_counter() - started, _children_cpu() - cpu

    def truncate() -> None:
        with connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("TRUNCATE {}.ceiling").format(ident))

    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(ceiling_ddl(schema))
    rates: dict[str, float] = {}
    passes: dict[str, list[float]] = {}
    client_cpu: list[float] = []
    try:
        load([paths[:WARMUP_FILES]])  # untimed: caches, catalog, the table's first pages
        for n in levels or parallelism_levels():
            parts = [paths[i::n] for i in range(n) if paths[i::n]]
            # start, connect, exit: not loading
            empty = [load([[] for _ in parts]) for _ in range(PASSES)]
            startup = statistics.median(t for t, _ in empty)
            startup_cpu = statistics.median(c for _, c in empty)
            passes[str(n)] = []
            for _ in range(PASSES):
                truncate()
                elapsed, cpu = load(parts)
                passes[str(n)].append(elapsed - startup)
                client_cpu.append(max(0.0, cpu - startup_cpu))
            rates[str(n)] = rows / _positive(statistics.median(passes[str(n)]), startup, rows)
    finally:
        with connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
    per_row = statistics.median(client_cpu) / rows if psql and client_cpu and rows else None
    return Ceiling(max(rates.values(), default=0.0), rows, len(paths), method, rates, passes,
                   per_row)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's reaped children (the psql processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _positive(elapsed: float, startup: float, rows: int) -> float:
    if elapsed <= 0:
        raise RuntimeError(f"COPY ceiling not measurable: loading {rows} rows took no longer "
                           f"than starting the loaders ({startup * 1e3:.1f} ms); raise "
                           "ceiling_rows")
    return elapsed
