"""The COPY ceiling: how fast this PostgreSQL server ingests this data with nothing in between.

``psql \\copy`` of the clean files (one ``\\copy`` per file, each its own transaction, as the
pipeline commits per file) into a table with the staging table's data columns, run by one
and by two parallel psql processes; the ceiling is the better of the two rates. Where psql
is not installed, the same bytes go through psycopg's raw ``COPY ... FROM STDIN`` on one
and two connections instead, and the result says so.

Measured once per run (in the scenario's ``prepare``) and cached as JSON in the run's
scratch folder, where ``bound()`` reads it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from psycopg import sql

from harness.services.postgres import connect
from harness.workloads.csvgen import FileExpectation
from harness.workloads.pgload import column_ddl

CACHE_NAME = "copy-ceiling.json"
PSQL_TIMEOUT_S = 900


@dataclass
class Ceiling:
    """The measured ceiling and how it was measured."""

    rows_per_s: float
    rows: int
    files: int                           # \copy commands (a small data set is loaded repeatedly)
    method: str                          # "psql \\copy" or "psycopg raw COPY (no psql)"
    by_parallelism: dict[str, float] = field(default_factory=dict)  # "1"/"2" -> rows/s


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
        errors[i] = proc.communicate(script, PSQL_TIMEOUT_S)[1] or b""

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


def measure(dsn: str, folder: Path, files: list[FileExpectation], schema: str,
            min_rows: int = 0) -> Ceiling:
    """Time one and two parallel loaders of ``files`` (clean ones) into a scratch table.

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
    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL(f"CREATE TABLE {{}}.ceiling ({column_ddl()})").format(ident))
    rates: dict[str, float] = {}
    try:
        for n in (1, 2):
            with connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("TRUNCATE {}.ceiling").format(ident))
            parts = [paths[i::n] for i in range(n) if paths[i::n]]
            started = time.perf_counter()
            if psql:
                _psql_runs(psql, dsn, table, parts)
            else:
                _raw_runs(dsn, table, parts)
            rates[str(n)] = rows / max(time.perf_counter() - started, 1e-9)
    finally:
        with connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
    return Ceiling(max(rates.values(), default=0.0), rows, len(paths), method, rates)


def save(ceiling: Ceiling, work_dir: Path) -> Path:
    path = Path(work_dir) / CACHE_NAME
    path.write_text(json.dumps(asdict(ceiling), indent=2) + "\n")
    return path


def load(work_dir: Path) -> Ceiling | None:
    """The ceiling measured for this run, or None when it was not measured."""
    path = Path(work_dir) / CACHE_NAME
    if not path.exists():
        return None
    return Ceiling(**json.loads(path.read_text()))
