"""The csv_ingest schema, declared once as SQLAlchemy Core tables.

The DDL of a cell, the COPY ceiling's scratch table, every loader's statements and the
``verify`` queries are all built from these :class:`~sqlalchemy.Table` objects, so a
column is named in one place. The tables are declared without a schema (a cell's
connection has its schema first on the search path); :func:`tables` gives copies bound to
a named schema for connections that do not.

* ``staging``: every valid record with its ``file_id`` and ``line`` (a number, not the
  file's name: 4 bytes instead of ~20 on every row sent, parsed and stored);
* ``quarantine``: every rejected record: file, first ``line`` (0 for a whole rejected
  file), ``lines`` spanned, reason, detail and raw bytes;
* ``loaded_files``: one row per file, inserted first in the file's transaction, with the
  file's accounting (lines read = rows + quarantined lines + skipped lines). A retried or
  re-run file finds its row and loads nothing (``ON CONFLICT DO NOTHING``); ``backend``
  records which server session loaded it, so ``verify`` can count connections;
* ``failed_files``: files that could not be loaded, with the error (written outside the
  failed transaction), so no file goes silently missing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import (Column, Integer, LargeBinary, MetaData, Numeric, Table, Text,
                        func, select, text)
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import ClauseElement
from sqlalchemy.types import TIMESTAMP

from harness.workloads.csvgen import COLUMNS

DIALECT = postgresql.psycopg.dialect()
_TYPES = {"quantity": Integer, "unit_price": Numeric(12, 2), "ts": TIMESTAMP(timezone=True)}


def data_columns() -> list[Column]:
    """Fresh Column objects for the supplier columns (a Column belongs to one table)."""
    return [Column(c, _TYPES.get(c, Text), nullable=(c == "note")) for c in COLUMNS]


class Tables(NamedTuple):
    staging: Table
    quarantine: Table
    loaded_files: Table
    failed_files: Table


def _declare(metadata: MetaData) -> Tables:
    return Tables(
        Table("staging", metadata, Column("file_id", Integer, nullable=False),
              Column("line", Integer, nullable=False), *data_columns()),
        Table("quarantine", metadata, Column("file", Text, nullable=False),
              Column("line", Integer, nullable=False), Column("lines", Integer, nullable=False),
              Column("reason", Text, nullable=False), Column("detail", Text, nullable=False),
              Column("raw", LargeBinary, nullable=False)),
        Table("loaded_files", metadata, Column("file", Text, primary_key=True),
              Column("file_id", Integer, nullable=False, unique=True),
              Column("loader", Text, nullable=False),
              *[Column(name, Integer, nullable=False) for name in ACCOUNT],
              Column("note", Text, nullable=False, server_default=""),
              Column("backend", Integer, nullable=False, server_default=text("pg_backend_pid()")),
              Column("loaded_at", TIMESTAMP(timezone=True), nullable=False,
                     server_default=func.now())),
        Table("failed_files", metadata, Column("file", Text, primary_key=True),
              Column("error", Text, nullable=False),
              Column("failures", Integer, nullable=False, server_default="1")))


# The accounting columns of loaded_files: lines = rows + quarantined_lines + skipped_*.
ACCOUNT = ("lines", "rows", "quarantined", "quarantined_lines", "skipped_header",
           "skipped_blank", "skipped_repeated_header")
TABLES = _declare(MetaData())


@lru_cache(maxsize=64)
def tables(schema: str | None = None) -> Tables:
    """The tables, qualified with ``schema`` (None: unqualified, the search path decides)."""
    return TABLES if schema is None else _declare(MetaData(schema=schema))


def sql_text(statement: ClauseElement) -> str:
    """A statement as PostgreSQL text for psycopg (``%(name)s`` parameters)."""
    return str(statement.compile(dialect=DIALECT))


def ddl() -> str:
    """CREATE TABLE for the four tables, unqualified (run in the cell's schema)."""
    return "".join(f"{str(CreateTable(t).compile(dialect=DIALECT)).strip()};\n"
                   for t in TABLES)


def ceiling_ddl(schema: str) -> str:
    """The COPY ceiling's scratch table: the staging table's supplier columns only."""
    table = Table("ceiling", MetaData(schema=schema), *data_columns())
    return str(CreateTable(table).compile(dialect=DIALECT))


# ---------------------------------------------------------------- verify queries
def _q(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True}))


def per_file_query() -> str:
    """Per loaded file: name, loader, its accounting columns, the staging rows and the
    quarantine records and lines actually there."""
    t = TABLES
    staged = (select(t.staging.c.file_id, func.count().label("n"))
              .group_by(t.staging.c.file_id).subquery())
    held = (select(t.quarantine.c.file, func.count().label("n"),
                   func.sum(t.quarantine.c.lines).label("lines"))
            .group_by(t.quarantine.c.file).subquery())
    lf = t.loaded_files
    return _q(select(lf.c.file, lf.c.loader, *[lf.c[n] for n in ACCOUNT],
                     func.coalesce(staged.c.n, 0), func.coalesce(held.c.n, 0),
                     func.coalesce(held.c.lines, 0))
              .outerjoin(staged, staged.c.file_id == lf.c.file_id)
              .outerjoin(held, held.c.file == lf.c.file))


def reasons_query() -> str:
    """(file, reason, records) of the quarantine."""
    q = TABLES.quarantine
    return _q(select(q.c.file, q.c.reason, func.count()).group_by(q.c.file, q.c.reason))


def duplicates_query() -> str:
    """(staging, quarantine) counts of (file, line) keys held more than once."""
    s, q = TABLES.staging, TABLES.quarantine
    dup_s = select(s.c.file_id).group_by(s.c.file_id, s.c.line).having(func.count() > 1)
    dup_q = select(q.c.file).group_by(q.c.file, q.c.line).having(func.count() > 1)
    return _q(select(select(func.count()).select_from(dup_s.subquery()).scalar_subquery(),
                     select(func.count()).select_from(dup_q.subquery()).scalar_subquery()))


def orphans_query() -> str:
    """Staging rows whose file id no loaded file has."""
    s, lf = TABLES.staging, TABLES.loaded_files
    return _q(select(func.count()).select_from(s).where(
        ~select(lf.c.file_id).where(lf.c.file_id == s.c.file_id).exists()))


def failed_query() -> str:
    return _q(select(TABLES.failed_files.c.file))


def backends_query() -> str:
    return _q(select(func.count(TABLES.loaded_files.c.backend.distinct())))
