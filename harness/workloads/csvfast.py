"""The fast screen: a clean file's own record lines go to COPY, no row through Python.

Most supplier files are clean. For those, :func:`screen` proves in a few C-level passes
(RE2, compiled once through google-re2, and pyarrow kernels; GIL released) that the full
reader (:func:`~harness.workloads.csvvalidate.check_file`) would accept every line after the
header, and keeps the lines as they are. Their COPY payload is then those lines with
``file_id,line,`` in front, joined by one Arrow kernel (:func:`payload`): no table, no
typed values, no Python object per row. A file the screen does not pass (``None``) goes
to the full reader, which decides it as before; the screen never rejects anything.

A file passes when all of these hold:

* the encoding is UTF-8 (after gzip, which the caller undoes) and the bytes are valid
  UTF-8 (one Arrow cast); a UTF-8 BOM is stripped, with the full reader's note;
* its lines end in LF or CRLF (a lone CR sends the file to the full reader);
* the first line is the header with the columns in :data:`COLUMNS` order, exactly;
* every following line is one record matching :data:`ROW`: the row rule's own patterns
  (:mod:`harness.workloads.rowrule`) for quantity, unit_price and ts, non-empty unquoted
  text for the other required columns, and for ``note`` unquoted text or one well-quoted
  field. No blank line, no repeated header, no NUL, no stray quote can match;
* no line is longer than ``MAX_FIELD_BYTES`` (so no field is oversized).

Each condition implies the full reader's verdict on every line (the same patterns on the
same field text, which pyarrow's reader and PostgreSQL's CSV input both read the same
way when only ``note`` may be quoted); ``tests/test_csv_fast.py`` holds the two equal
on random files (hypothesis). The per-file pattern is hand-assembled from the rule's
patterns because one RE2 pass over the whole body measured 3x cheaper than a pyarrow
parse plus the rule's column kernels (~0.3 vs ~1 us per line on the default data set).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import re2

from harness.workloads import rowrule
from harness.workloads.csvgen import COLUMNS, MAX_FIELD_BYTES
from harness.workloads.csvlines import BOM_NOTE, UTF8_BOM, is_utf8

HEADER = ",".join(COLUMNS).encode() + b"\n"


def _inner(pattern: str) -> str:
    """A rule's anchored pattern without its anchors, to embed in a row pattern."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return pattern[1:-1]


_TEXT = r'[^",\r\n\x00]+'                                # required: non-empty, unquoted
_NOTE = r'(?:[^",\r\n\x00]*|"(?:[^"\r\n\x00]|"")*")'     # optional; may be quoted
_FIELDS = {"quantity": _inner(rowrule.QUANTITY), "unit_price": _inner(rowrule.PRICE),
           "ts": _inner(rowrule.TIMESTAMP), "note": _NOTE}
ROW = ",".join(_FIELDS.get(c, _TEXT) for c in COLUMNS)
# The whole body in one pass, ROW written once (``(?:ROW\n)*ROW\n?`` compiled 2x slower).
BODY = rf"^(?:{ROW}(?:\n|$))+$"
LINE = rf"^{ROW}$"


def _latin1(pattern: str) -> re2._Regexp:
    """``pattern`` compiled once by RE2 over bytes, as pyarrow's regex kernels read a binary
    array (Latin-1: one byte, one character; the text was found valid UTF-8 first, and the
    pattern names ASCII only, so it accepts the same lines as over UTF-8)."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(pattern.encode(), options)


# The same RE2 as pyarrow's match_substring_regex, compiled once per process: pyarrow compiles
# the pattern and rebuilds its DFA on every call (~160 us of a clean file's ~280 us search on
# the default data set, measured); google-re2 keeps both and releases the GIL while it matches.
_BODY = _latin1(BODY)


@dataclass(frozen=True)
class Clean:
    """Plain records, kept as they are: their lines (binary array, no line ends) and the
    line number of each (from 2 on, one after another, for a file the screen passed)."""

    records: pa.Array
    numbers: np.ndarray
    note: str = ""

    @property
    def rows(self) -> int:
        return len(self.records)


def plain(records: pa.Array) -> np.ndarray:
    """Which of ``records`` (one line each, binary) are plain records the rule accepts:
    :data:`ROW` and no longer than ``MAX_FIELD_BYTES``. For a file with a few bad lines."""
    ok = pc.and_(pc.match_substring_regex(records, LINE),
                 pc.less_equal(pc.binary_length(records), MAX_FIELD_BYTES))
    return ok.to_numpy(zero_copy_only=False)


def screen(data: bytes, encoding: str = "utf-8") -> Clean | None:
    """The file's records when the full reader would accept every one; else None."""
    if not is_utf8(encoding):
        return None
    note = ""
    if data.startswith(UTF8_BOM):
        data, note = data[len(UTF8_BOM):], BOM_NOTE
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")   # same physical lines, one kind of end
        if b"\r" in data:
            return None
    if not data.startswith(HEADER) or len(data) == len(HEADER):
        return None
    # A line that starts with a BOM (concatenated exports): the full reader strips it;
    # pyarrow would only at a buffer's start. The memchr for its first byte (rare in
    # UTF-8 text) comes first: the substring search costs 20x more (~70 us a file).
    if UTF8_BOM[:1] in data and b"\n" + UTF8_BOM in data:
        return None
    start = len(HEADER)
    body = pa.Array.from_buffers(pa.binary(), 1, [None, pa.py_buffer(
        np.array([start, len(data)], np.int32)), pa.py_buffer(data)])  # no copy
    if not data.isascii():
        try:
            body.cast(pa.string())  # Arrow's UTF-8 validation
        except pa.ArrowInvalid:
            return None
    if _BODY.search(memoryview(data)[start:]) is None:  # a view: no copy
        return None
    records = pc.list_flatten(pc.split_pattern(body, b"\n"))
    if data.endswith(b"\n"):
        records = records.slice(0, len(records) - 1)  # after the last line end: nothing
    if len(data) - start > MAX_FIELD_BYTES and pc.max(pc.binary_length(records)).as_py() \
            > MAX_FIELD_BYTES:
        return None  # a field may be oversized: the full reader says which
    return Clean(records, np.arange(2, len(records) + 2, dtype=np.int32), note)


_tokens = pa.array([], pa.binary())  # b"2,", b"3,", ...: a record's line number, made once
_tokens_lock = threading.Lock()


def _line_tokens(n: int) -> pa.Array:
    """``n`` line-number prefixes, from line 2 (the first record) on."""
    global _tokens
    if len(_tokens) < n:
        with _tokens_lock:  # a whole new array swapped in: readers never see a partial one
            if len(_tokens) < n:
                _tokens = pa.array([b"%d," % i for i in range(2, 2 * n + 2)], pa.binary())
    return _tokens.slice(0, n)


def payload(clean: Clean, file_id: int) -> memoryview:
    """The COPY (FORMAT csv) payload: ``file_id,line,`` and the record's own bytes, one
    line each, built by one Arrow kernel; a view of its buffer, not a copy."""
    n = clean.rows
    if n and clean.numbers[-1] == n + 1:  # lines 2, 3, ...: the prefixes made once
        tokens = _line_tokens(n)
    else:
        tokens = pc.binary_join_element_wise(pc.cast(pa.array(clean.numbers), pa.string())
                                             .cast(pa.binary()), b",", b"")
    return _view(pc.binary_join_element_wise(b"%d," % file_id, tokens, clean.records, b"\n",
                                             b""))  # the last argument is the separator


def joined(clean: Clean) -> memoryview:
    """The records as CSV text, one line each (for pyarrow's reader)."""
    return _view(pc.binary_join_element_wise(clean.records, b"\n", b""))


def _view(lines: pa.Array) -> memoryview:
    """The bytes of a binary array's values, end to end, without a copy."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, 4 * lines.offset)
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])]
