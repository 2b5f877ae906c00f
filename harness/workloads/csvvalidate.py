"""Read a supplier file the way real files come, and account for every line of it.

:func:`check_file` turns a file's bytes into a :class:`Checked`: the valid records (an
Arrow table of strings in :data:`~harness.workloads.csvgen.COLUMNS` order, with their line
numbers), the rejected ones (reason, detail, first line, lines spanned, raw bytes) and the
lines skipped (header, blank, repeated header), such that

    lines read = rows loaded + lines quarantined + lines skipped.

What a file may look like (docs/csv_ingest.md has the table; the first four points are
:mod:`harness.workloads.csvlines`'s, which turns the bytes into lines):

* gzip, found by its magic bytes whatever the name, is decompressed; zip/bzip2/xz are
  rejected whole as ``compressed_file`` with a hint (an archive may hold several files);
* a UTF-8 BOM is stripped; a UTF-16 BOM means UTF-16 and the file is transcoded;
* ``encoding`` (default utf-8) names the supplier's encoding, e.g. latin-1; a line that
  does not decode is quarantined alone (``invalid_utf8`` / ``invalid_encoding``), the
  detail saying which byte and suggesting the parameter;
* lines end in LF, CRLF or CR, mixed at will (``bytes.splitlines``);
* blank lines (empty, spaces, or only commas, as spreadsheets export) before or after the
  header are skipped as ``blank``; lines equal to the header as ``repeated_header``;
* the header names the columns in any order (case and surrounding spaces ignored); a
  missing, unknown or duplicated column rejects the file whole, naming the column;
* a NUL byte quarantines its line (``nul_byte``);
* quoting: a line whose quotes are unbalanced opens a quoted field. The resync rule: the
  record runs to the next line with an odd number of quotes, at most :data:`MAX_SPAN`
  lines on, *if* the joined lines are one well-quoted record with the header's number of
  fields; it is then quarantined as ``embedded_newline`` with its span. Otherwise the
  opening line alone is ``bad_quoting`` (the quote never closes) and every following line
  is judged on its own, so a stray quote costs one line, not the rest of the file;
* records are parsed by pyarrow's CSV reader (an ``invalid_row_handler`` collects the
  ``wrong_column_count`` lines) and judged by :mod:`harness.workloads.rowrule` on whole
  columns. Python touches only lines that are rejected or need the quote rule;
* a clean file (canonical header, UTF-8, every line a plain record the rule accepts) is
  recognised first by :mod:`harness.workloads.csvfast` in one RE2 pass, and keeps its
  own lines: its table is parsed only if a loader asks for typed values.

Line numbers are physical lines, the first line of the file being line 1.
"""

from __future__ import annotations

import bisect
import csv
import io
import operator
import re
from dataclasses import dataclass, field
from itertools import compress, repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from harness.workloads import csvfast, rowrule
from harness.workloads.csvlines import Rejected, cut, decode_lines, text_lines, unwrap
from harness.workloads.csvgen import COLUMNS, MAX_FIELD_BYTES

MAX_SPAN = 50         # a quoted field may run over at most this many lines
SKIP_REASONS = ("header", "blank", "repeated_header")
# A field: quoted (doubled quotes inside) or without any quote. Possessive quantifiers
# (the two alternatives start differently, so giving back never helps) halve the time
# Python's engine spends per line.
_FIELD = rb'(?:"(?:[^"]++|"")*+"|[^",]*+)'
_well_quoted = re.compile(rb"%s(?:,%s)*+" % (_FIELD, _FIELD), re.S).fullmatch
_quoted_text = re.compile(rb'"(?:[^"]|"")*"', re.S)


@dataclass
class Checked:
    """Everything :func:`check_file` found in one file. The valid records come in two
    parts: ``clean``, the plain lines the fast screen passed (kept as they are, for COPY),
    and ``judged``, the rest the row rule accepted (an Arrow table with its
    ``judged_lines``). :attr:`table` and :attr:`line_numbers` are the two together in
    line order; a clean part is parsed only when asked for (the ``copy`` loader never
    asks)."""

    lines: int = 0                                    # physical lines read
    judged: pa.Table | None = None                    # valid records, COLUMNS order
    judged_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    rejected: list[Rejected] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # SKIP_REASONS -> lines
    note: str = ""                                    # e.g. "gzip, decompressed"
    clean: csvfast.Clean | None = None                # the fast screen's records
    _merged: tuple[pa.Table, np.ndarray] | None = None

    def _both(self) -> tuple[pa.Table | None, np.ndarray]:
        if self.clean is None:
            return self.judged, self.judged_lines
        if self._merged is None:
            # the screen guarantees one plain record per line: pyarrow reads them as is
            table = _parse(csvfast.joined(self.clean), list(COLUMNS), MAX_FIELD_BYTES)[0]
            numbers = self.clean.numbers
            if self.judged is not None and self.judged.num_rows:
                numbers = np.concatenate([numbers, self.judged_lines])
                order = np.argsort(numbers, kind="stable")
                table = pa.concat_tables([table, self.judged]).take(pa.array(order))
                numbers = numbers[order]
            self._merged = table, numbers
        return self._merged

    @property
    def table(self) -> pa.Table | None:
        """Every valid record, in line order (COLUMNS order, strings)."""
        return self._both()[0]

    @property
    def line_numbers(self) -> np.ndarray:
        """The line of each row of :attr:`table`."""
        return self._both()[1]

    @property
    def rows(self) -> int:
        judged = 0 if self.judged is None else self.judged.num_rows
        return judged + (0 if self.clean is None else self.clean.rows)

    @property
    def quarantined_lines(self) -> int:
        return sum(r.lines for r in self.rejected)

    @property
    def skipped_lines(self) -> int:
        return sum(self.skipped.values())

    @property
    def accounted(self) -> bool:
        """Every line is loaded, quarantined or skipped, exactly once."""
        return self.lines == self.rows + self.quarantined_lines + self.skipped_lines


def _whole(reason: str, detail: str, data: bytes, lines: int) -> Checked:
    raw, detail = cut(data, detail)
    return Checked(lines=lines, rejected=[Rejected(0, reason, detail, raw, lines)])


# ------------------------------------------------------------------------- header
def _header(line: bytes) -> tuple[list[str], str, str]:
    """(column names in file order, file-level reason or "", detail)."""
    try:
        names = [n.strip().lower() for n in next(csv.reader([line.decode()]))]
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return [], "bad_header", "the first line is not a CSV header"
    known = set(COLUMNS)
    if not known & set(names):
        return [], "bad_header", f"the first line names none of the columns: {line[:80]!r}"
    seen: set[str] = set()
    duplicated = sorted({n for n in names if n in seen or seen.add(n)})
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in known]
    if duplicated:
        return names, "duplicate_column", f"column {', '.join(duplicated)} appears twice"
    if missing or unknown:
        detail = "; ".join(part for part in (
            f"missing column {', '.join(missing)}" if missing else "",
            f"unknown column {', '.join(map(repr, unknown))}" if unknown else "") if part)
        return names, "missing_column" if missing else "unknown_column", detail
    return names, "", ""


# ------------------------------------------------------------------------- quotes
def _fields(record: bytes) -> int:
    return _quoted_text.sub(b"", record).count(b",") + 1


def _quote_spans(lines: list[bytes], start: int, ncols: int,
                 taken: set[int]) -> tuple[list[Rejected], set[int]]:
    """Records with a quote problem, and every line they cover (see the module doc).
    Lines in ``taken`` (already quarantined, e.g. undecodable) are never part of a span."""
    rejected: list[Rejected] = []
    covered: set[int] = set()
    # C-level passes: the lines with a quote, then those of them that are not well quoted
    # (every line with an odd number of quotes is among them). Python sees only those.
    tail = lines[start:]
    quoted = _flags(map(operator.contains, tail, repeat(b'"')))
    bad = [start + k for k in compress(quoted, map(operator.not_, map(
        _well_quoted, map(tail.__getitem__, quoted))))]
    odd = [i for i in bad if lines[i].count(b'"') % 2]
    odd_set = set(odd)
    for i in bad:
        if i in covered or i in taken:
            continue
        covered.add(i)
        if i not in odd_set:
            rejected.append(Rejected(i + 1, "bad_quoting", "a quote inside an unquoted field "
                                     "or text after a closing quote", lines[i]))
            continue
        # the next odd line after i (bisect: a file of inch marks has an odd line per line)
        k = bisect.bisect_right(odd, i)
        end = odd[k] if k < len(odd) and odd[k] <= i + MAX_SPAN else None
        record = b"\n".join(lines[i:end + 1]) if end is not None else b""
        if (end is not None and taken.isdisjoint(range(i, end + 1)) and _well_quoted(record)
                and _fields(record) == ncols):
            covered.update(range(i, end + 1))
            raw, detail = cut(record, f"a quoted field spans lines {i + 1}-{end + 1}")
            rejected.append(Rejected(i + 1, "embedded_newline", detail, raw, end - i + 1))
        else:
            rejected.append(Rejected(i + 1, "bad_quoting", f"a quote opened on line {i + 1} "
                                     "never closes: this line alone is quarantined", lines[i]))
    return rejected, covered


# ------------------------------------------------------------------------ records
def _parse(body: bytes, names: list[str], longest: int) -> tuple[pa.Table, list[int]]:
    """pyarrow's reader over one-record lines: the table and the 0-based positions of
    the lines with the wrong number of fields (not in the table). ``longest`` is the
    longest line: a block must hold a whole line, or pyarrow refuses the file."""
    wrong: list[int] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        wrong.append(row.number - 1)  # use_threads=False: physical rows are numbered
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                       block_size=max(1 << 20, 2 * longest + 2)),
        parse_options=pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False,
                                         invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                             strings_can_be_null=False))
    return table.select(list(COLUMNS)), wrong


def _judged(checked: Checked, lines: list[bytes], candidates: list[int],
            names: list[str], body: bytes | None, fast: bool = True) -> None:
    """Parse and judge the candidate lines (``body``: the file's bytes from the first
    candidate on, when they are exactly the candidates); fill ``checked``. With ``fast``,
    the plain records go to ``checked.clean`` unparsed."""
    longest = max(map(len, lines))
    if fast and names == list(COLUMNS):
        # The plain records (most of a file with a few bad ones) keep their own bytes, as
        # in a clean file; only the rest is parsed and judged.
        # joined and split again by Arrow: 20x cheaper than converting the bytes objects
        text = b"\n".join(map(lines.__getitem__, candidates))
        records = pc.list_flatten(pc.split_pattern(pa.array([text], pa.binary()), b"\n"))
        plain = csvfast.plain(records)
        if plain.any():
            numbers = np.asarray(candidates, dtype=np.int32)
            checked.clean = csvfast.Clean(records.filter(plain), numbers[plain] + 1)
            candidates = list(compress(candidates, ~plain))
            body = None
            if not candidates:
                return
    if body is not None:
        table, wrong = _parse(body, names, longest)
        if table.num_rows + len(wrong) != len(candidates):  # pyarrow split lines otherwise
            body = None
    if body is None:
        table, wrong = _parse(b"\n".join(map(lines.__getitem__, candidates)), names, longest)
    for k in wrong:
        i = candidates[k]
        checked.rejected.append(Rejected(i + 1, "wrong_column_count", f"expected {len(names)} "
                                         f"fields, got {_fields(lines[i])}", lines[i]))
    parsed = np.delete(np.asarray(candidates, dtype=np.int32), wrong)
    codes = rowrule.judge(table, longest)
    bad = np.flatnonzero(codes)
    # the rejected rows' fields in one conversion (one slice each cost ~15 us a row)
    for k, fields in zip(bad, table.take(bad).to_pylist() if len(bad) else ()):
        reason = rowrule.FIELD_REASONS[codes[k]]
        i = int(parsed[k])
        raw, detail = cut(lines[i], rowrule.detail(reason, fields))
        checked.rejected.append(Rejected(i + 1, reason, detail, raw))
    valid = codes == 0
    checked.judged = table.filter(pa.array(valid)) if not valid.all() else table
    checked.judged_lines = parsed[valid] + 1


def _flags(values) -> list[int]:
    """Positions of the truthy values (a C-level loop)."""
    flags = list(values)
    return list(compress(range(len(flags)), flags))


def check_file(data: bytes, encoding: str = "utf-8", fast: bool = True) -> Checked:
    """Validate one supplier file; never raises on bad content (see the module doc).
    A clean file is recognised by :func:`~harness.workloads.csvfast.screen` first, and
    the plain records of any other by :func:`~harness.workloads.csvfast.plain`;
    ``fast=False`` parses and judges every record (the property test compares the two)."""
    data, reason, note = unwrap(data)
    if reason:
        return _whole(reason, note, data, 0)
    clean = csvfast.screen(data, encoding) if fast else None
    if clean is not None:
        return Checked(lines=1 + clean.rows,
                       skipped=dict.fromkeys(SKIP_REASONS, 0) | {"header": 1},
                       note="; ".join(n for n in (note, clean.note) if n), clean=clean)
    raw_lines, bom_note = text_lines(data, encoding)
    note = "; ".join(n for n in (note, bom_note) if n)
    if not raw_lines:
        return Checked(rejected=[Rejected(0, "empty_file", "no lines", b"", 0)], note=note)
    lines, rejected = decode_lines(raw_lines, encoding)
    if rejected:  # said once per file too, in loaded_files.note
        note = "; ".join(n for n in (note, f"{len(rejected)} of {len(lines)} lines are not "
                                     f"{encoding}") if n)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    blank = set(_flags(map(operator.not_, map(bytes.strip, lines, repeat(b" \t,")))))
    blank -= {r.line - 1 for r in rejected}
    head = next((i for i in range(len(lines)) if i not in blank), None)
    if head is None or rejected and rejected[0].line - 1 == head:
        return _whole("bad_header", "no header line" if head is None else "the header is "
                      "not text in the file's encoding", data, len(lines))
    names, reason, detail = _header(lines[head])
    if reason:
        return _whole(reason, detail, raw_lines[head], len(lines))
    checked = Checked(lines=len(lines), rejected=rejected, skipped=skipped, note=note)
    done = {r.line - 1 for r in rejected}
    if b'"' in data:
        spans, covered = _quote_spans(lines, head + 1, len(names), done)
        checked.rejected += spans
        done |= covered
    _classify(checked, lines, head, blank, done, b"\0" in data)
    candidates = sorted(set(range(head + 1, len(lines))) - done)
    if not candidates and not checked.rejected:
        checked.rejected.append(Rejected(0, "header_only", "a header and no records", b"", 0))
    elif candidates:
        # The common case, every line after the header a candidate: pyarrow reads the
        # file's own bytes, no copy.
        direct = (data[len(lines[0]):].lstrip(b"\r\n") if not note and head == 0
                  and lines is raw_lines and len(candidates) == len(lines) - 1 else None)
        _judged(checked, lines, candidates, names, direct, fast)
    checked.rejected.sort(key=operator.attrgetter("line"))
    return checked


def _classify(checked: Checked, lines: list[bytes], head: int, blank: set[int],
              done: set[int], nul: bool) -> None:
    """Skip the header, blank lines and repeated headers; quarantine NUL lines. Every
    line handled here is added to ``done``."""
    headers = {lines[head], lines[head].strip(), ",".join(COLUMNS).encode()}
    checked.skipped["header"] = 1
    checked.skipped["blank"] = len(blank - done)
    done |= blank | {head}
    repeated: set[int] = set()
    if any(lines[head + 1:].count(h) for h in headers):  # C-level scans, per header form
        repeated = set(_flags(map(headers.__contains__, lines))) - done
    checked.skipped["repeated_header"] = len(repeated)
    done |= repeated
    if nul:
        for i in set(_flags(map(operator.contains, lines, repeat(b"\0")))) - done:
            column = lines[i].index(b"\0") + 1
            checked.rejected.append(Rejected(i + 1, "nul_byte", f"a NUL byte at column {column}",
                                             lines[i]))
            done.add(i)
