"""Load one supplier file into PostgreSQL: one transaction per file, keyed by the file.

:func:`plan_file` validates the file (:func:`~harness.workloads.csvvalidate.check_file`,
the one rule) and types the valid records with Arrow casts (C speed): every loader sends
the server the same typed values, so the server's casts never decide validity. A file's
transaction inserts its ``loaded_files`` row first (with the file's accounting; a file
already loaded adds nothing), then the valid records, then the rejected ones.

Loaders (``loader`` parameter; the tables are :mod:`harness.workloads.csvtables`):

* ``copy`` (default): one ``COPY staging FROM STDIN (FORMAT csv)`` of the valid records: a
  clean file's own lines (:mod:`harness.workloads.csvfast`), else the accepted text written
  as CSV by pyarrow; either way no row goes through Python;
* ``executemany``: psycopg ``executemany`` of an INSERT, one tuple per record (psycopg
  pipelines it);
* ``pandas`` and ``orm``: through SQLAlchemy (:mod:`harness.workloads.saloaders`).

A value the rule accepted and the server refuses is a bug in the rule, never a verdict on
the row: the file's transaction fails, the file lands in ``failed_files`` and ``verify``
says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert

from harness.workloads import csvfast
from harness.workloads.csvgen import COLUMNS
from harness.workloads.csvtables import ACCOUNT, sql_text, tables
from harness.workloads.csvvalidate import Checked, check_file

LOADERS = ("copy", "executemany", "pandas", "orm")
ARROW_TYPES = {"quantity": pa.int32(), "unit_price": pa.decimal128(12, 2),
               "ts": pa.timestamp("us", tz="UTC")}
QUARANTINE_COLUMNS = ("file", "line", "lines", "reason", "detail", "raw")
CLAIM_COLUMNS = ("file", "file_id", "loader", *ACCOUNT, "note")
__all__ = ["LOADERS", "FilePlan", "LoadResult", "load_file", "aload_file", "plan_file",
           "record_failure", "arecord_failure"]


@dataclass(frozen=True)
class Statements:
    """The per-file statements of one schema, built from the Core tables."""

    claim: str
    copy_staging: bytes
    insert_staging: str
    copy_quarantine: bytes
    failed: str


@lru_cache(maxsize=64)
def statements(schema: str) -> Statements:
    """The statements for ``schema`` (composed once per schema and process)."""
    t = tables(schema)
    claim = insert(t.loaded_files).values({c: bindparam(c) for c in CLAIM_COLUMNS})
    failed = insert(t.failed_files).values(file=bindparam("file"), error=bindparam("error"))
    failed = failed.on_conflict_do_update(
        index_elements=["file"], set_={"error": failed.excluded.error,
                                       "failures": t.failed_files.c.failures + 1})
    staging_cols = [c.name for c in t.staging.columns]
    values = ", ".join(["%s"] * len(staging_cols))

    def copy(table: Any, cols: list[str] | tuple[str, ...], options: str) -> bytes:
        # Bytes, composed once: psycopg would compose an sql.Composed again on every COPY
        # (~0.1 ms of client CPU per statement, measured; a clean file's own COPY is ~1 ms).
        return sql.SQL("COPY {}.{} ({}) FROM STDIN" + options).format(
            sql.Identifier(schema), sql.Identifier(table.name),
            sql.SQL(", ").join(map(sql.Identifier, cols))).as_bytes()

    return Statements(
        claim=sql_text(claim.on_conflict_do_nothing()),
        # An unquoted empty note (a raw line's) is '' as pyarrow reads it, not NULL.
        copy_staging=copy(t.staging, staging_cols, " (FORMAT csv, FORCE_NOT_NULL (note))"),
        insert_staging=f'INSERT INTO "{schema}".staging ({", ".join(staging_cols)}) '
                       f"VALUES ({values})",
        copy_quarantine=copy(t.quarantine, QUARANTINE_COLUMNS, ""),
        failed=sql_text(failed))


@dataclass
class FilePlan:
    """What one file's transaction writes."""

    file: str
    file_id: int
    checked: Checked
    loader: str = "copy"

    @property
    def rows(self) -> int:
        return self.checked.rows

    def claim(self) -> dict[str, Any]:
        """The file's ``loaded_files`` row: its accounting."""
        c = self.checked
        skipped = {f"skipped_{k}": c.skipped.get(k, 0)
                   for k in ("header", "blank", "repeated_header")}
        return {"file": self.file, "file_id": self.file_id, "loader": self.loader,
                "lines": c.lines, "rows": c.rows, "quarantined": len(c.rejected),
                "quarantined_lines": c.quarantined_lines, **skipped, "note": c.note}

    def typed(self) -> pa.Table:
        """The valid records with ``file_id`` and ``line`` first and the typed columns
        cast by Arrow (the rule guarantees every cast succeeds)."""
        table = self.checked.table
        assert table is not None
        columns = [pc.cast(table[c], ARROW_TYPES[c]) if c in ARROW_TYPES else table[c]
                   for c in COLUMNS]
        n = table.num_rows
        return pa.table([pa.repeat(pa.scalar(self.file_id, pa.int32()), n),
                         pa.array(self.checked.line_numbers, pa.int32()), *columns],
                        names=["file_id", "line", *COLUMNS])

    def payload(self) -> bytes | memoryview:
        """The valid records as CSV for COPY, ``file_id`` and ``line`` first. A file the
        fast screen passed sends its own record lines (:func:`csvfast.payload`); any
        other file's valid records are written by pyarrow's writer (C speed). Either way
        the values are the text the rule accepted, which the server's input functions
        read as the Arrow casts of :meth:`typed` do (the loader test holds every
        loader's stored values equal); formatting typed timestamps and decimals would
        cost 20x more."""
        c = self.checked
        own = csvfast.payload(c.clean, self.file_id) if c.clean is not None else b""
        if c.judged is None or not c.judged.num_rows:
            return own
        n = c.judged.num_rows
        out = io.BytesIO()
        out.write(own)
        pacsv.write_csv(pa.table([pa.repeat(pa.scalar(self.file_id, pa.int32()), n),
                                  pa.array(c.judged_lines, pa.int32()),
                                  *c.judged.columns], names=["file_id", "line", *COLUMNS]),
                        out, pacsv.WriteOptions(include_header=False))
        return out.getvalue()

    def quarantine_rows(self) -> list[tuple[Any, ...]]:
        return [(self.file, r.line, r.lines, r.reason, r.detail, r.raw)
                for r in self.checked.rejected]


@dataclass(frozen=True)
class LoadResult:
    rows: int                # staged now (0 when the file had been loaded before)
    quarantined: int
    lines: int = 0
    skipped: bool = False    # already loaded: a retry or re-run added nothing


def plan_file(file: str, file_id: int, data: bytes, encoding: str = "utf-8",
              loader: str = "copy") -> FilePlan:
    """Validate ``data`` (pure: no database) and say what its transaction writes."""
    return FilePlan(file, file_id, check_file(data, encoding), loader)


def result(plan: FilePlan, skipped: bool = False) -> LoadResult:
    """What a unit reports for ``plan`` (nothing new when ``skipped``)."""
    if skipped:
        return LoadResult(0, 0, plan.checked.lines, skipped=True)
    return LoadResult(plan.rows, len(plan.checked.rejected), plan.checked.lines)


def _staging_rows(plan: FilePlan) -> list[tuple[Any, ...]]:
    return list(zip(*(col.to_pylist() for col in plan.typed().columns)))


def _staged(plan: FilePlan) -> Any:
    """What goes to staging (the COPY payload, or the rows for executemany; None without
    rows), made before the transaction opens: client CPU inside it would hold the file's row
    lock and its connection for longer than loading needs."""
    if not plan.rows:
        return None
    return plan.payload() if plan.loader == "copy" else _staging_rows(plan)


def _write(conn: psycopg.Connection, st: Statements, plan: FilePlan) -> LoadResult:
    staged = _staged(plan)
    with conn.transaction():
        cur = conn.cursor()
        if cur.execute(st.claim, plan.claim()).rowcount == 0:
            return result(plan, skipped=True)
        if staged is not None and plan.loader == "copy":
            with cur.copy(st.copy_staging) as copy:
                copy.write(staged)
        elif staged is not None:
            cur.executemany(st.insert_staging, staged)
        if plan.checked.rejected:
            with cur.copy(st.copy_quarantine) as copy:
                for row in plan.quarantine_rows():
                    copy.write_row(row)
    return result(plan)


async def _awrite(conn: psycopg.AsyncConnection, st: Statements, plan: FilePlan) -> LoadResult:
    staged = _staged(plan)
    async with conn.transaction():
        cur = conn.cursor()
        if (await cur.execute(st.claim, plan.claim())).rowcount == 0:
            return result(plan, skipped=True)
        if staged is not None and plan.loader == "copy":
            async with cur.copy(st.copy_staging) as copy:
                await copy.write(staged)
        elif staged is not None:
            await cur.executemany(st.insert_staging, staged)
        if plan.checked.rejected:
            async with cur.copy(st.copy_quarantine) as copy:
                for row in plan.quarantine_rows():
                    await copy.write_row(row)
    return result(plan)


def _psycopg_loader(loader: str) -> None:
    if loader not in ("copy", "executemany"):
        raise ValueError(f"loader {loader!r} does not run on a psycopg connection "
                         "(see harness.workloads.saloaders)")


def load_file(conn: psycopg.Connection, schema: str, file: str, file_id: int, data: bytes,
              encoding: str = "utf-8", loader: str = "copy") -> LoadResult:
    """Validate and load one file in one transaction (idempotent per ``file``), with the
    ``copy`` or ``executemany`` loader."""
    _psycopg_loader(loader)
    return _write(conn, statements(schema), plan_file(file, file_id, data, encoding, loader))


async def aload_file(conn: psycopg.AsyncConnection, schema: str, file: str, file_id: int,
                     data: bytes, encoding: str = "utf-8", loader: str = "copy") -> LoadResult:
    """Async twin of :func:`load_file` (psycopg AsyncConnection)."""
    _psycopg_loader(loader)
    return await _awrite(conn, statements(schema), plan_file(file, file_id, data, encoding,
                                                             loader))


def record_failure(conn: psycopg.Connection, schema: str, file: str, error: str) -> None:
    """Note a file that could not be loaded (its own transaction)."""
    with conn.transaction():
        conn.execute(statements(schema).failed, {"file": file, "error": error[:500]})


async def arecord_failure(conn: psycopg.AsyncConnection, schema: str, file: str,
                          error: str) -> None:
    async with conn.transaction():
        await conn.execute(statements(schema).failed, {"file": file, "error": error[:500]})
