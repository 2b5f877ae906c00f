"""Client CPU time of csv_ingest's row path, by ``time.process_time`` (steadier than wall
time on a shared machine). Not a pytest module: run it by hand.

    python tests/perf/csv_cpu.py            # validation + COPY payload, median of 3
    DATABASE_URL=... python tests/perf/csv_cpu.py --loaders   # + each loader, 40 files
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from harness.workloads import csvgen, csvtables, pgload, saloaders

SPEC = csvgen.Spec(suppliers=20, files_per_supplier=10, rows_per_file=1000, malformed_fraction=0.1)


def check_cpu(files: list[tuple[str, bytes]]) -> tuple[int, float]:
    """(lines, median CPU seconds) of validating every file and writing its COPY payload."""
    lines, times = sum(len(d.splitlines()) for _, d in files), []
    for _ in range(3):
        started = time.process_time()
        for i, (name, data) in enumerate(files, 1):
            plan = pgload.plan_file(name, i, data)
            if plan.rows:
                plan.payload()
        times.append(time.process_time() - started)
    return lines, statistics.median(times)


def loader_cpu(dsn: str, files: list[tuple[str, bytes]]) -> None:
    schema = f"csv_cpu_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(csvtables.ddl())
    try:
        for loader in pgload.LOADERS:
            eng = (saloaders.engine(lambda: psycopg.connect(dsn))
                   if loader in saloaders.SA_LOADERS else None)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"TRUNCATE {schema}.staging, {schema}.quarantine, "
                             f"{schema}.loaded_files")  # the same files, loaded afresh
                started, rows = time.process_time(), 0
                for i, (name, data) in enumerate(files, 1):
                    if eng is not None:
                        rows += saloaders.SA_LOADERS[loader](eng, schema, name, i, data).rows
                    else:
                        rows += pgload.load_file(conn, schema, name, i, data, loader=loader).rows
                cpu = time.process_time() - started
            if eng is not None:
                eng.dispose()
            print(f"  {loader:12s} {rows} rows, client CPU {cpu:.3f} s = {rows / cpu:,.0f} rows/CPU-s")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    folder = csvgen.ensure_dataset(Path(tempfile.gettempdir()) / "csv-cpu", SPEC)
    exps = list(csvgen.expectations(folder))
    files = [(e.name, (folder / e.name).read_bytes()) for e in exps]
    check_cpu(files[:20])  # warm-up: imports, compiled patterns
    for label, subset in (("all files", files),
                          ("clean files", [f for f, e in zip(files, exps) if e.clean and e.rows])):
        lines, cpu = check_cpu(subset)
        print(f"{label}: {len(subset)} files, {lines} lines, check + payload {cpu:.3f} s CPU "
              f"= {lines / cpu:,.0f} lines/CPU-s")
    if "--loaders" in sys.argv:
        loader_cpu(os.environ["DATABASE_URL"], files[:40])


if __name__ == "__main__":
    main()
