"""Parse and validate supplier CSV files: a byte-level screen for clean files, per-record
checks for the rest.

Two paths, because almost every file is clean and per-record Python is the expensive part:

* :func:`screen` looks at the whole file with C-speed byte operations (exact header, no
  quoted field spanning lines, longest line) and answers *clean* (one record per line, no
  field can be oversized), *file rejected* (empty, header only, not the expected CSV) or
  *needs the row path*. A clean body goes to PostgreSQL's typed COPY as raw bytes; the
  server's parse is the rest of the check (every byte is verified as UTF-8 against the
  client encoding; integer, numeric, timestamptz, NOT NULL), so nothing is parsed twice.
  When the server rejects a value, the loader falls back to the row path.
* :func:`check_rows` checks record by record and gives every rejected record its reason,
  its first line number and its raw bytes. Records of the common valid shape are recognised
  by one compiled pattern mapped over all lines at C speed; any other record goes through
  the csv module and :func:`reason`, which accepts it or names the first rule it breaks.
  The rules are the server's plus what the server would accept but a staging table must
  not (embedded line breaks, oversized fields). Valid records keep their raw bytes, so
  they are loaded by the same raw COPY as clean files.

Line numbers are physical lines of the file, the header being line 1; a record spanning
several lines is numbered by its first line.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime

from harness.workloads.csvgen import COLUMNS, HEADER, MAX_FIELD_BYTES

MAX_RAW_BYTES = 4096  # quarantined raw bytes are cut here (the length is kept in `detail`)
_QUANTITY = r"-?[0-9]{1,9}"
_PRICE = r"-?[0-9]{1,10}(?:\.[0-9]{1,2})?"
# ISO 8601 extended format with a zone, a shape PostgreSQL's timestamptz input also reads.
_TIMESTAMP = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
              r"(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:?[0-9]{2})")
_is_quantity = re.compile(_QUANTITY).fullmatch
_is_price = re.compile(_PRICE).fullmatch
_is_timestamp = re.compile(_TIMESTAMP).fullmatch
_REQUIRED = tuple(i for i, name in enumerate(COLUMNS) if name != "note")


# A timestamp of the common shape whose text alone proves a real instant: month 01-12, a day
# that month has (29 February is left to the calendar check), 00:00:00-23:59:59, UTC.
_CALENDAR_TIMESTAMP = (r"[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
                       r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
                       r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z")


def _record_pattern() -> re.Pattern[bytes]:
    """A whole valid one-line record of the common shape, as bytes: required fields
    non-empty and unquoted, typed fields well formed, a calendar-proof timestamp, the note
    empty, plain or quoted. The caller checks length and encoding. Anything it does not
    match is judged by :func:`reason`."""
    shapes = {"quantity": _QUANTITY, "unit_price": _PRICE, "ts": _CALENDAR_TIMESTAMP,
              "note": r'(?:[^,"\r\n]*|"(?:[^"\r\n]|"")*")'}
    return re.compile(",".join(shapes.get(c, r'[^,"\r\n]+') for c in COLUMNS).encode())


_common_record = _record_pattern().fullmatch


@dataclass(frozen=True)
class Rejected:
    """One quarantined record (``line`` 0 for a whole rejected file)."""

    line: int
    reason: str
    detail: str
    raw: bytes


@dataclass
class Screened:
    """What the byte-level screen found."""

    clean: bool = False
    lines: list[bytes] = field(default_factory=list)  # the body's records when clean
    rejected: Rejected | None = None                  # set when the whole file is rejected
    why_rows: str = ""                                # why the row path is needed


@dataclass
class RowCheck:
    """The row path's result: the body's physical lines (line i is line number i + 2),
    which of them are valid records, and the rejected records."""

    lines: list[bytes] = field(default_factory=list)
    keep: list[bool] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def valid(self) -> list[tuple[int, bytes]]:
        """(line number, raw bytes) of every valid record."""
        return [(i + 2, line) for i, (line, ok) in enumerate(zip(self.lines, self.keep)) if ok]


def _file_rejected(data: bytes) -> Rejected | None:
    if not data:
        return Rejected(0, "empty_file", "0 bytes", b"")
    if not data.startswith(HEADER):
        first = data.split(b"\n", 1)[0]
        return Rejected(0, "bad_header", f"first line is not the expected header "
                        f"({len(data)} bytes)", first[:MAX_RAW_BYTES])
    if len(data) == len(HEADER):
        return Rejected(0, "header_only", "a header and no records", data)
    return None


def screen(data: bytes) -> Screened:
    """Classify a whole file with byte operations only (no per-field Python work)."""
    rejected = _file_rejected(data)
    if rejected is not None:
        return Screened(rejected=rejected)
    raw = data[len(HEADER):]
    if b"\r" in raw or not raw.endswith(b"\n"):
        return Screened(why_rows="CR or unterminated last line")
    lines = raw.split(b"\n")
    lines.pop()  # after the final newline
    if max(map(len, lines)) > MAX_FIELD_BYTES:
        return Screened(why_rows="a line longer than the field limit")
    if b'"' in raw and b"\n" in b"".join(raw.split(b'"')[1::2]):
        # Between the 1st and 2nd quote, the 3rd and 4th, ... is quoted text (an escaped ""
        # closes and reopens): a line break there is a field spanning lines. A stray quote
        # flips the parity exactly as it flips PostgreSQL's CSV parser.
        return Screened(why_rows="a quoted field spans lines")
    return Screened(clean=True, lines=lines)


def reason(fields: list[str], raw: str) -> tuple[str, str]:
    """The first rule a record breaks, as (reason, detail); ("", "") when it is valid.

    ``raw`` is the record's text decoded with ``surrogateescape`` (invalid bytes survive as
    lone surrogates) and without its final line break.
    """
    if not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # a surrogate-escaped byte: not UTF-8
            byte = ord(raw[exc.start]) - 0xDC00
            return "invalid_utf8", f"byte 0x{byte:02x} at column {exc.start + 1}"
    if "\n" in raw or "\r" in raw:
        return "embedded_newline", "a quoted field contains a line break"
    if len(fields) != len(COLUMNS):
        return "wrong_column_count", f"expected {len(COLUMNS)} fields, got {len(fields)}"
    if len(raw) > MAX_FIELD_BYTES // 4:  # shorter records cannot hold an oversized field
        for i, value in enumerate(fields):
            if len(value.encode()) > MAX_FIELD_BYTES:
                return ("oversized_field",
                        f"{COLUMNS[i]} has {len(value.encode())} bytes (max {MAX_FIELD_BYTES})")
    quantity, price, ts = fields[3], fields[4], fields[6]
    if not _is_quantity(quantity):
        return "non_numeric_quantity", f"quantity {quantity[:40]!r}"
    if not _is_price(price):
        return "non_numeric_price", f"unit_price {price[:40]!r}"
    if not _is_timestamp(ts) or not _real_time(ts):
        return "bad_timestamp", f"ts {ts[:40]!r} is not an ISO 8601 time with a zone"
    for i in _REQUIRED:
        if not fields[i]:
            return "missing_field", f"{COLUMNS[i]} is empty"
    return "", ""


def _real_time(ts: str) -> bool:
    """A well-formed timestamp that names a real instant (no month 13, no 30 February)."""
    try:
        datetime.fromisoformat(ts)
    except ValueError:
        return False
    return True


def _record_reason(record: bytes) -> tuple[str, str]:
    text = record.decode("utf-8", "surrogateescape")
    if '"' not in text:
        return reason(text.split(","), text)
    try:
        fields = next(csv.reader((text,), strict=True))
    except csv.Error as exc:
        return "bad_quoting", f"csv: {exc}"
    return reason(fields, text)


def check_rows(data: bytes) -> RowCheck:
    """Validate every record of a file whose header is right; never raises on bad content.

    The common case runs at C speed: one pattern match per line, mapped over all lines.
    Python looks only at the lines the pattern did not accept (bad records, quoted line
    breaks, rarer valid shapes), joining a quoted field's continuation lines.
    """
    body = data[len(HEADER):]
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # after the final line break
    keep = list(map(bool, map(_common_record, lines)))
    if max(map(len, lines), default=0) > MAX_FIELD_BYTES:
        keep = [ok and len(line) <= MAX_FIELD_BYTES for ok, line in zip(keep, lines)]
    if not _utf8(body):  # the pattern accepts any byte: find the lines that are not UTF-8
        keep = [ok and (line.isascii() or _utf8(line)) for ok, line in zip(keep, lines)]
    result = RowCheck(lines, keep)
    count, resume = len(lines), 0
    for i in [i for i, ok in enumerate(keep) if not ok]:
        if i < resume:
            continue  # a continuation line, judged with its record
        record, resume = lines[i], i + 1
        while record.count(b'"') % 2 and resume < count:  # a quoted field goes on
            record += b"\n" + lines[resume]
            keep[resume] = False
            resume += 1
        record = record[:-1] if record.endswith(b"\r") else record  # CRLF
        why, detail = _record_reason(record)
        if not why:
            lines[i], keep[i] = record, True
            continue
        if len(record) > MAX_RAW_BYTES:
            detail += f"; raw record {len(record)} bytes, first {MAX_RAW_BYTES} kept"
        result.rejected.append(Rejected(i + 2, why, detail, record[:MAX_RAW_BYTES]))
    return result


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
