"""A supplier file's bytes as lines of UTF-8 (the first step of :mod:`csvvalidate`).

gzip is found by its magic bytes and decompressed, archives are refused with a hint, a BOM
is stripped (UTF-16 with a BOM transcoded), lines are split at LF, CRLF or CR, and a line
that does not decode in the supplier's encoding is rejected alone, its detail naming the
byte and the parameter to try.
"""

from __future__ import annotations

import bisect
import codecs
import gzip
import threading
import zlib
from dataclasses import dataclass
from itertools import accumulate

MAX_RAW_BYTES = 4096  # quarantined raw bytes are cut here (the length is kept in `detail`)
_ARCHIVES = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
UTF8_BOM = codecs.BOM_UTF8
BOM_NOTE = "UTF-8 BOM stripped"
_BOMS = ((UTF8_BOM, "utf-8"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


@dataclass(frozen=True)
class Rejected:
    """One quarantined record: ``line`` is its first line (0 for a whole rejected file),
    ``lines`` how many physical lines it accounts for."""

    line: int
    reason: str
    detail: str
    raw: bytes
    lines: int = 1


def is_utf8(encoding: str) -> bool:
    """Does ``encoding`` name UTF-8 (``utf-8``, ``UTF_8``, ``utf8``)?"""
    return encoding.replace("_", "-").lower() in ("utf-8", "utf8")


def _without_boms(line: bytes) -> bytes:
    while line.startswith(UTF8_BOM):
        line = line[len(UTF8_BOM):]
    return line


def cut(raw: bytes, detail: str) -> tuple[bytes, str]:
    """The raw bytes a quarantine record keeps (at most MAX_RAW_BYTES) and its detail."""
    if len(raw) > MAX_RAW_BYTES:
        return raw[:MAX_RAW_BYTES], f"{detail}; raw record {len(raw)} bytes, first {MAX_RAW_BYTES} kept"
    return raw, detail


def unwrap(data: bytes) -> tuple[bytes, str, str]:
    """(data, file-level reason or "", note): gzip decompressed, archives refused."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data), "", "gzip, decompressed"
        except (OSError, EOFError, zlib.error) as exc:
            return data, "bad_compressed_file", f"gzip magic bytes but {exc}"
    for magic, kind in _ARCHIVES.items():
        if data.startswith(magic):
            return data, "compressed_file", (f"a {kind} archive: extract its CSV files and "
                                             "deliver them one by one (or gzip each one)")
    return data, "", ""


def decode_lines(lines: list[bytes], encoding: str) -> tuple[list[bytes], list[Rejected]]:
    """The lines as UTF-8; lines that do not decode are rejected, one by one."""
    utf8 = is_utf8(encoding)
    body = b"\n".join(lines)
    try:
        text = body.decode(encoding)
        return (lines if utf8 else text.encode().split(b"\n")), []
    except UnicodeDecodeError:
        pass
    if utf8:
        return _utf8_lines(lines, body, encoding)
    good, rejected = [], []
    for i, line in enumerate(lines):  # another encoding: transcoded line by line
        try:
            good.append(line if line.isascii() else line.decode(encoding).encode())
        except UnicodeDecodeError as exc:
            rejected.append(Rejected(i + 1, "invalid_encoding", f"byte 0x{line[exc.start]:02x} "
                                     f"at column {exc.start + 1} is not {encoding}", line))
            good.append(b"")  # keeps the numbering; never read again
    return good, rejected


_decode_errors = threading.local()  # the error handler's byte offsets, per thread


def _note_error(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    _decode_errors.at.append(exc.start)
    return "", exc.end


codecs.register_error("harness.csvlines", _note_error)


def _utf8_lines(lines: list[bytes], body: bytes,
                encoding: str) -> tuple[list[bytes], list[Rejected]]:
    """UTF-8 lines, some of which do not decode: one decode of the whole body with an error
    handler that notes where (Python sees the bad sequences, not every line). A bad
    sequence never spans a line end (a newline is never a continuation byte), so each
    offset falls in one line, and the line's first one is what decoding it alone reports."""
    _decode_errors.at = []
    body.decode("utf-8", "harness.csvlines")
    # each line's start: its length and its line end, summed (C-level iterators: a
    # generator expression cost ~0.15 us a line)
    starts = list(accumulate(map((1).__add__, map(len, lines)), initial=0))
    good, rejected = list(lines), []
    for at in _decode_errors.at:
        i = bisect.bisect_right(starts, at) - 1
        if good[i]:  # the first bad sequence of line i (a bad line is never empty)
            column = at - starts[i]
            rejected.append(Rejected(i + 1, "invalid_utf8", f"byte 0x{lines[i][column]:02x} "
                                     f"at column {column + 1} is not {encoding}; a Latin-1 "
                                     "export? try --param encoding=latin-1", lines[i]))
            good[i] = b""  # keeps the numbering; never read again
    return good, rejected


def text_lines(data: bytes, encoding: str) -> tuple[list[bytes], str]:
    """Split into physical lines after a BOM (UTF-16 with a BOM is transcoded). In UTF-8, a
    BOM that starts a later line (a header prepended to a BOM'd export) is stripped too:
    pyarrow's reader drops one at the start of whatever it reads, so left in, a record's
    first field would depend on where the record sits."""
    lines, note = _split(data)
    # the BOM's first byte is rare in text: its memchr spares most files the slower search
    if is_utf8(encoding) and data.find(UTF8_BOM[:1], 1) >= 0 and data.find(UTF8_BOM, 1) >= 0:
        stripped = 0
        for i, line in enumerate(lines):
            if line.startswith(UTF8_BOM):
                lines[i], stripped = _without_boms(line), stripped + 1
        if stripped:
            note = "; ".join(n for n in (note, f"a UTF-8 BOM stripped from the start of "
                                         f"{stripped} more line(s)") if n)
    return lines, note


def _split(data: bytes) -> tuple[list[bytes], str]:
    """The physical lines after a BOM at the file's start, and the note saying so."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            if name == "utf-16":
                try:
                    return data.decode("utf-16").encode().splitlines(), "UTF-16 (BOM), transcoded"
                except UnicodeDecodeError:
                    break  # not UTF-16 after all: judged line by line as it is
            return data[len(bom):].splitlines(), BOM_NOTE
    return data.splitlines(), ""
