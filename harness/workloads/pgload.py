"""Load one validated CSV file into PostgreSQL: one transaction per file, keyed by the file.

Tables (in a schema of their own, one per benchmark cell):

* ``staging``: every valid record with its ``file_id`` and ``line`` (a number, not the
  file's name: 4 bytes instead of ~20 on every row sent, parsed and stored);
* ``quarantine``: every rejected record (``file``, ``line``, ``reason``, ``detail``, ``raw``
  bytes; line 0 for a whole rejected file);
* ``loaded_files``: one row per file (name and id), inserted first in the file's
  transaction. A retried or re-run file finds its row and loads nothing (``ON CONFLICT DO
  NOTHING``); two concurrent loads of one file serialize on its key, so rows are never
  duplicated;
* ``failed_files``: files that could not be loaded, with the error (written outside the
  failed transaction), so no file ever goes silently missing.

Valid records go in with one ``COPY ... (FORMAT csv)`` of their raw lines, each prefixed
with its file id and line number: all the lines of a clean file, the valid ones of a file
with bad records (checked one by one); rejected records go to the quarantine with
``write_row``.
When the server rejects a "clean" file (a value that is not an integer, a timestamp, ...),
the transaction rolls back and the file is loaded through the row path, which gives each
bad record its reason.
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import compress
from typing import Iterable

import psycopg
from psycopg import sql

from harness.workloads.csvgen import COLUMNS
from harness.workloads.csvvalidate import Rejected, check_rows, screen

DATA_TYPES = {"quantity": "integer NOT NULL", "unit_price": "numeric(12,2) NOT NULL",
              "ts": "timestamptz NOT NULL", "note": "text"}
# What makes the server refuse a COPY of a screened file: bad values (class 22: data
# exception, including invalid UTF-8 and bad CSV) and missing values (NOT NULL).
SERVER_REJECTS = (psycopg.DataError, psycopg.errors.NotNullViolation)


def column_ddl() -> str:
    """The data columns, as the staging and ceiling tables declare them."""
    return ", ".join(f"{c} {DATA_TYPES.get(c, 'text NOT NULL')}" for c in COLUMNS)


def ddl() -> str:
    """The four tables, unqualified (run with the cell's schema first on the search path).

    ``loaded_files.backend`` records which server session loaded each file, so ``verify``
    can count the connections a cell really used against its pool size.
    """
    return (f"CREATE TABLE staging (file_id integer NOT NULL, line integer NOT NULL, "
            f"{column_ddl()});\n"
            "CREATE TABLE quarantine (file text NOT NULL, line integer NOT NULL, "
            "reason text NOT NULL, detail text NOT NULL, raw bytea NOT NULL);\n"
            "CREATE TABLE loaded_files (file text PRIMARY KEY, file_id integer NOT NULL UNIQUE, "
            "path text NOT NULL, "
            "rows integer NOT NULL, quarantined integer NOT NULL, "
            "backend integer NOT NULL DEFAULT pg_backend_pid(), "
            "loaded_at timestamptz NOT NULL DEFAULT now());\n"
            "CREATE TABLE failed_files (file text PRIMARY KEY, error text NOT NULL, "
            "failures integer NOT NULL DEFAULT 1);\n")


@dataclass(frozen=True)
class Statements:
    claim: sql.Composed
    copy_raw: sql.Composed
    copy_quarantine: sql.Composed
    failed: sql.Composed


@lru_cache(maxsize=64)
def statements(schema: str) -> Statements:
    """The per-file statements for ``schema`` (composed once per schema and process)."""
    s = sql.Identifier(schema)
    staging_cols = sql.SQL(", ").join(map(sql.Identifier, ("file_id", "line") + COLUMNS))
    return Statements(
        claim=sql.SQL("INSERT INTO {}.loaded_files (file, file_id, path, rows, quarantined) "
                      "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(s),
        copy_raw=sql.SQL("COPY {}.staging ({}) FROM STDIN (FORMAT csv)").format(s, staging_cols),
        copy_quarantine=sql.SQL("COPY {}.quarantine (file, line, reason, detail, raw) "
                                "FROM STDIN").format(s),
        failed=sql.SQL("INSERT INTO {}.failed_files (file, error) VALUES (%s, %s) "
                       "ON CONFLICT (file) DO UPDATE SET error = EXCLUDED.error, "
                       "failures = failed_files.failures + 1").format(s))


@dataclass
class FilePlan:
    """What one file's transaction writes."""

    file: str
    file_id: int
    path: str                      # "copy" (clean), "rows" (checked per record) or "rejected"
    rows: int = 0
    payload: bytes = b""           # the valid records, CSV lines prefixed with file id and line
    rejected: list[Rejected] = field(default_factory=list)
    fallback: str = ""             # why a screened-clean file went the row path


@dataclass(frozen=True)
class LoadResult:
    rows: int                # staged now (0 when the file had been loaded before)
    quarantined: int
    path: str
    skipped: bool = False    # already loaded: a retry or re-run added nothing
    fallback: str = ""


def plan_file(file: str, file_id: int, data: bytes, force_rows: str = "") -> FilePlan:
    """Validate ``data`` and decide how it is loaded; ``force_rows`` skips the raw path."""
    screened = screen(data)
    if screened.rejected is not None:
        return FilePlan(file, file_id, "rejected", rejected=[screened.rejected])
    if screened.clean and not force_rows:
        return FilePlan(file, file_id, "copy", rows=len(screened.lines),
                        payload=prefixed(file_id, screened.lines))
    checked = check_rows(data)
    rows = sum(checked.keep)
    return FilePlan(file, file_id, "rows", rows=rows,
                    payload=prefixed(file_id, checked.lines, checked.keep) if rows else b"",
                    rejected=checked.rejected, fallback=force_rows)


_LINE_TOKENS: list[bytes] = []  # b"2,", b"3,", ...: line numbers of records, made once
_TOKENS_LOCK = threading.Lock()


def prefixed(file_id: int, lines: list[bytes], keep: list[bool] | None = None) -> bytes:
    """The records as CSV lines starting with ``file_id,line,`` (the header is line 1, so
    ``lines[i]`` is line i + 2); with ``keep``, only the lines it marks.

    The per-line work is one C-level concatenation; the file prefix comes in as the join's
    separator, so this costs about as much as splitting the file did.
    """
    if len(_LINE_TOKENS) < len(lines):
        with _TOKENS_LOCK:  # appended whole under the lock: readers only ever see a prefix
            more = [b"%d," % n for n in range(len(_LINE_TOKENS) + 2, 2 * len(lines) + 2)]
            _LINE_TOKENS.extend(more)
    tokens: Iterable[bytes] = _LINE_TOKENS
    if keep is not None:
        tokens, lines = compress(_LINE_TOKENS, keep), compress(lines, keep)
    prefix = b"%d," % file_id
    return prefix + (b"\n" + prefix).join(map(operator.add, tokens, lines)) + b"\n"


def _result(plan: FilePlan, skipped: bool = False) -> LoadResult:
    if skipped:
        return LoadResult(0, 0, plan.path, skipped=True)
    return LoadResult(plan.rows, len(plan.rejected), plan.path, fallback=plan.fallback)


def _claim_args(plan: FilePlan) -> tuple[str, int, str, int, int]:
    return plan.file, plan.file_id, plan.path, plan.rows, len(plan.rejected)


def _write(conn: psycopg.Connection, st: Statements, plan: FilePlan) -> LoadResult:
    with conn.transaction():
        cur = conn.cursor()
        if cur.execute(st.claim, _claim_args(plan)).rowcount == 0:
            return _result(plan, skipped=True)
        if plan.payload:
            with cur.copy(st.copy_raw) as copy:
                copy.write(plan.payload)
        if plan.rejected:
            with cur.copy(st.copy_quarantine) as copy:
                for r in plan.rejected:
                    copy.write_row((plan.file, r.line, r.reason, r.detail, r.raw))
    return _result(plan)


async def _awrite(conn: psycopg.AsyncConnection, st: Statements, plan: FilePlan) -> LoadResult:
    async with conn.transaction():
        cur = conn.cursor()
        if (await cur.execute(st.claim, _claim_args(plan))).rowcount == 0:
            return _result(plan, skipped=True)
        if plan.payload:
            async with cur.copy(st.copy_raw) as copy:
                await copy.write(plan.payload)
        if plan.rejected:
            async with cur.copy(st.copy_quarantine) as copy:
                for r in plan.rejected:
                    await copy.write_row((plan.file, r.line, r.reason, r.detail, r.raw))
    return _result(plan)


def _why(exc: psycopg.Error) -> str:
    return f"server rejected the raw COPY: {exc.sqlstate} {str(exc).splitlines()[0][:120]}"


def load_file(conn: psycopg.Connection, schema: str, file: str, file_id: int,
              data: bytes) -> LoadResult:
    """Validate and load one file in one transaction (idempotent per ``file``)."""
    st = statements(schema)
    plan = plan_file(file, file_id, data)
    try:
        return _write(conn, st, plan)
    except SERVER_REJECTS as exc:
        if plan.path != "copy":
            raise
        return _write(conn, st, plan_file(file, file_id, data, force_rows=_why(exc)))


async def aload_file(conn: psycopg.AsyncConnection, schema: str, file: str, file_id: int,
                     data: bytes) -> LoadResult:
    """Async twin of :func:`load_file` (psycopg AsyncConnection)."""
    st = statements(schema)
    plan = plan_file(file, file_id, data)
    try:
        return await _awrite(conn, st, plan)
    except SERVER_REJECTS as exc:
        if plan.path != "copy":
            raise
        return await _awrite(conn, st, plan_file(file, file_id, data, force_rows=_why(exc)))


def record_failure(conn: psycopg.Connection, schema: str, file: str, error: str) -> None:
    """Note a file that could not be loaded (its own transaction)."""
    with conn.transaction():
        conn.execute(statements(schema).failed, (file, error[:500]))


async def arecord_failure(conn: psycopg.AsyncConnection, schema: str, file: str,
                          error: str) -> None:
    async with conn.transaction():
        await conn.execute(statements(schema).failed, (file, error[:500]))
