"""The loaders teams write with SQLAlchemy: ``pandas`` (``DataFrame.to_sql`` through an
engine, ``method="multi"``, chunked) and ``orm`` (``Session.add_all`` of mapped objects,
one session transaction per file).

Both validate with the same rule and type with the same Arrow casts as ``copy``
(:func:`harness.workloads.pgload.plan_file`), claim the file in ``loaded_files`` first in
the same transaction, and write the quarantine with a Core ``insert``. The ORM is imported
only when the ``orm`` loader is used.

What they cost is the point of having them (client CPU, 40 generated files, 39,637 rows,
``time.process_time``, tests/perf/csv_cpu.py --loaders): copy ~190k rows/CPU-s,
executemany ~40k, orm ~11k, pandas ~3.2k.
``method="multi"`` makes SQLAlchemy compile one bind parameter per value (11,000 per
1,000-row chunk): its compiler, not the server, is pandas' cost here.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Callable

import psycopg
from sqlalchemy import Engine, create_engine, insert

from harness.workloads.csvtables import tables
from harness.workloads.pgload import (QUARANTINE_COLUMNS, FilePlan, LoadResult, plan_file,
                                      result, statements)

PANDAS_CHUNK = 1000  # rows per multi-row INSERT (pandas' chunksize)
_engines: list[Engine] = []
_engines_lock = threading.Lock()


def engine(connect: Callable[[], psycopg.Connection]) -> Engine:
    """An SQLAlchemy engine over psycopg connections made by ``connect`` (the harness's
    own connection settings: search path, application name, timeouts). One per worker
    thread: the pool holds its one connection."""
    eng = create_engine("postgresql+psycopg://", creator=connect, pool_size=1, max_overflow=0,
                        pool_pre_ping=False)
    with _engines_lock:
        _engines.append(eng)
    return eng


def dispose_all() -> None:
    """Close every engine's connections (worker shutdown)."""
    with _engines_lock:
        while _engines:
            _engines.pop().dispose()


def _claim(conn: Any, schema: str, plan: FilePlan) -> bool:
    """Insert the file's loaded_files row; False when it was there (loaded before)."""
    return conn.exec_driver_sql(statements(schema).claim, plan.claim()).rowcount == 1


def _quarantine(conn: Any, schema: str, plan: FilePlan) -> None:
    if plan.checked.rejected:
        conn.execute(insert(tables(schema).quarantine),
                     [dict(zip(QUARANTINE_COLUMNS, row)) for row in plan.quarantine_rows()])


def load_pandas(eng: Engine, schema: str, file: str, file_id: int, data: bytes,
                encoding: str = "utf-8") -> LoadResult:
    """``DataFrame.to_sql(method="multi", chunksize=PANDAS_CHUNK)`` in the file's
    transaction."""
    plan = plan_file(file, file_id, data, encoding, "pandas")
    with eng.begin() as conn:
        if not _claim(conn, schema, plan):
            return result(plan, skipped=True)
        if plan.rows:
            frame = plan.typed().to_pandas()
            # The column types come from the Core table: pandas would send Decimal as text.
            types = {c.name: c.type for c in tables(schema).staging.columns}
            frame.to_sql("staging", conn, schema=schema, if_exists="append", index=False,
                         method="multi", chunksize=PANDAS_CHUNK, dtype=types)
        _quarantine(conn, schema, plan)
    return result(plan)


@lru_cache(maxsize=64)
def _mapped(schema: str) -> type:
    """An ORM class mapped onto ``schema``'s staging table (imported lazily: the ORM is
    the heaviest part of SQLAlchemy and only this loader needs it)."""
    try:
        from sqlalchemy.orm import registry
    except ImportError as exc:  # pragma: no cover - SQLAlchemy is a dependency
        raise RuntimeError("the orm loader needs SQLAlchemy >= 2: pip install 'SQLAlchemy>=2'") from exc
    staging = tables(schema).staging
    cls = type("StagedOrder", (), {"__doc__": "One staged supplier record (ORM)."})
    registry().map_imperatively(cls, staging, primary_key=[staging.c.file_id, staging.c.line])
    return cls


def load_orm(eng: Engine, schema: str, file: str, file_id: int, data: bytes,
             encoding: str = "utf-8") -> LoadResult:
    """One ORM session per file: ``session.add_all`` of mapped objects, then commit."""
    from sqlalchemy.orm import Session

    plan = plan_file(file, file_id, data, encoding, "orm")
    cls = _mapped(schema)
    with Session(eng) as session, session.begin():
        conn = session.connection()
        if not _claim(conn, schema, plan):
            return result(plan, skipped=True)
        if plan.rows:
            objects = []
            for row in plan.typed().to_pylist():
                obj = cls()
                for name, value in row.items():
                    setattr(obj, name, value)
                objects.append(obj)
            session.add_all(objects)
            session.flush()
        _quarantine(conn, schema, plan)
    return result(plan)


SA_LOADERS = {"pandas": load_pandas, "orm": load_orm}
