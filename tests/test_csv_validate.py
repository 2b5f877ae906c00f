"""Validation of supplier CSV files (no database): the one row rule, its independence from
neighbouring rows (a hypothesis property), real-world file damage, line accounting, and
agreement with what the generator says it wrote."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.workloads import csvgen, csvlines, csvvalidate, pgload, rowrule
from harness.workloads.csvgen import COLUMNS, HEADER, Spec
from harness.workloads.csvvalidate import MAX_SPAN, check_file

GOOD = b"S01,S01-00001-000001,SKU-000001,5,12.50,EUR,2024-03-01T12:34:56Z,M\xc3\xbcnchen,"


def row(i: int, **changes: bytes) -> bytes:
    fields = GOOD.split(b",")
    fields[1] = b"S01-00001-%06d" % i
    for name, value in changes.items():
        fields[COLUMNS.index(name)] = value
    return b",".join(fields)


def verdicts(data: bytes, encoding: str = "utf-8") -> dict[int, str]:
    """line -> "ok" or the reason, for every record of a file."""
    checked = check_file(data, encoding)
    assert checked.accounted, (checked.lines, checked.rows, checked.rejected, checked.skipped)
    out = {int(n): "ok" for n in checked.line_numbers}
    out.update({r.line: r.reason for r in checked.rejected})
    return out


# --------------------------------------------------------------------- the row rule
@pytest.mark.parametrize(("column", "value", "reason"), [
    ("quantity", b"+12", "non_numeric_quantity"), ("quantity", b" 12", "non_numeric_quantity"),
    ("quantity", b"1_000", "non_numeric_quantity"), ("quantity", b"1e3", "non_numeric_quantity"),
    ("quantity", b"9999999999", "non_numeric_quantity"), ("quantity", b"-7", "ok"),
    ("unit_price", b"1e3", "non_numeric_price"), ("unit_price", b"12.345", "price_scale"),
    ("unit_price", b"12.3", "ok"), ("unit_price", b"NaN", "non_numeric_price"),
    ("ts", b"now", "bad_timestamp"), ("ts", b"epoch", "bad_timestamp"),
    ("ts", b"2024-03-01T12:34:56", "timestamp_without_zone"),
    ("ts", b"2024-03-01 12:34:56+01:00", "ok"), ("ts", b"2024-03-01T12:34:56.5-0330", "ok"),
    ("ts", b"2024-02-30T08:00:00Z", "bad_timestamp"), ("ts", b"2024-02-29T08:00:00Z", "ok"),
    ("ts", b"2023-02-29T08:00:00Z", "bad_timestamp"), ("ts", b"1900-02-29T00:00:00Z", "bad_timestamp"),
    ("ts", b"2000-02-29T00:00:00Z", "ok"), ("ts", b"0000-01-01T00:00:00Z", "bad_timestamp"),
    ("ts", b"2024-04-31T00:00:00Z", "bad_timestamp"), ("ts", b"2024-12-31T00:00:00Z", "ok"), ("ts", b"2024-03-01T23:59:60Z", "bad_timestamp"),
    # PostgreSQL refuses offsets past 15:59 (COPY would fail the whole file); an instant of
    # year 1 or 9999 can leave years 1-9999 in UTC (BC for COPY, no datetime for the rest)
    ("ts", b"2024-03-01T12:34:56+15:59", "ok"), ("ts", b"2024-03-01T12:34:56+16:00", "bad_timestamp"),
    ("ts", b"2024-03-01T12:34:56-2359", "bad_timestamp"), ("ts", b"0002-01-01T00:00:00+05:00", "ok"),
    ("ts", b"0001-01-01T00:00:00+05:00", "bad_timestamp"), ("ts", b"9998-12-31T23:59:59-05:00", "ok"),
    ("ts", b"9999-12-31T23:59:59-05:00", "bad_timestamp"),
    ("sku", b"", "missing_field"), ("note", b"", "ok"), ("note", b"x" * 1025, "oversized_field"),
])
def test_the_rule_decides_not_the_server(column: str, value: bytes, reason: str) -> None:
    data = HEADER + row(1, **{column: value}) + b"\n"
    assert verdicts(data) == {2: reason}


def test_accepted_values_are_typed_exactly() -> None:
    """What the rule accepts, Arrow types without loss: 12.5 stays 12.50, a zone is honoured."""
    data = HEADER + row(1, unit_price=b"12.5", ts=b"2024-03-01 12:34:56+01:00") + b"\n"
    typed = pgload.plan_file("s01/a.csv", 3, data).typed().to_pylist()[0]
    assert (typed["file_id"], typed["line"], typed["quantity"]) == (3, 2, 5)
    assert str(typed["unit_price"]) == "12.50"
    assert typed["ts"].isoformat() == "2024-03-01T11:34:56+00:00"


VALID_VALUES = {"quantity": st.from_regex(r"-?[0-9]{1,9}", fullmatch=True),
                "unit_price": st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,2})?", fullmatch=True),
                "ts": st.sampled_from(["2024-03-01T12:34:56Z", "2024-12-31 23:59:59+01:00"])}
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='",\r\n\x00'),
                   max_size=12)
BAD_NEIGHBOURS = [row(90, quantity=b"twelve"), row(91) + b",EXTRA", row(92, note=b'"open'),
                  row(93, ts=b"now"), b"x\x00y", row(94, warehouse=b"M\xfcnchen"),
                  row(95, note=b'"two\nlines"'), HEADER.rstrip(), b""]


def _field(column: str):
    # valid values of the column, or anything at all (which may be valid or not)
    return st.one_of(VALID_VALUES.get(column, ANY_TEXT), ANY_TEXT,
                     st.sampled_from(["+12", " 12", "1_000", "1e3", "12.345", "now", "epoch",
                                      "2024-03-01T12:34:56", ""]))


@settings(max_examples=150, deadline=None)
@given(fields=st.tuples(*(_field(c) for c in COLUMNS)),
       quoted=st.lists(st.booleans(), min_size=len(COLUMNS), max_size=len(COLUMNS)),
       before=st.sampled_from(BAD_NEIGHBOURS), after=st.sampled_from(BAD_NEIGHBOURS))
def test_a_rows_verdict_does_not_depend_on_its_neighbours(fields, quoted, before, after) -> None:
    record = b",".join(b'"%s"' % f.encode() if q else f.encode() for f, q in zip(fields, quoted))
    alone = verdicts(HEADER + record + b"\n").get(2, "skipped")  # a blank or header line
    crowded = HEADER + before + b"\n" + record + b"\n" + after + b"\n"
    line = 2 + len(before.splitlines()) if before else 3
    assert verdicts(crowded).get(line, "skipped") == alone


# ------------------------------------------------------------------ real-world files
def test_bom_crlf_and_mixed_line_endings() -> None:
    data = b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + row(1) + b"\n" + row(2) + b"\r" + row(3)
    checked = check_file(data)
    assert (checked.lines, checked.rows, checked.rejected) == (4, 3, [])
    assert list(checked.line_numbers) == [2, 3, 4] and "BOM" in checked.note


def test_a_bom_that_starts_a_later_line_is_stripped_wherever_the_line_sits() -> None:
    """A header prepended to a BOM'd export: pyarrow drops a BOM only at the start of what it
    reads, so the record's first field must not depend on where the record sits."""
    bom = b"\xef\xbb\xbf"
    for data in (HEADER + bom + row(1) + b"\n" + row(2) + b"\n",       # first record
                 HEADER + row(1) + b"\n" + bom + row(2) + b"\n",       # later record
                 HEADER + row(1, quantity=b"+1") + b"\n" + bom + row(2) + b"\n"):  # dirty file
        for fast in (True, False):
            checked = check_file(data, fast=fast)
            assert "S01" in checked.table.column("supplier_id").to_pylist()
            assert not any(s.startswith("\ufeff") for s in checked.table.column("supplier_id").to_pylist())
            assert checked.accounted and "BOM stripped from the start of 1 more" in checked.note
    empty_first = HEADER + bom + row(1, supplier_id=b"") + b"\n"
    for fast in (True, False):
        assert [r.reason for r in check_file(empty_first, fast=fast).rejected] == ["missing_field"]


def test_columns_are_matched_by_name() -> None:
    header = ",".join(reversed(COLUMNS)).encode() + b"\n"
    fields = row(1).split(b",")
    data = header + b",".join(reversed(fields)) + b"\n"
    [record] = pgload.plan_file("s01/r.csv", 1, data).checked.table.to_pylist()
    assert record["order_id"] == "S01-00001-000001" and record["warehouse"] == "München"


@pytest.mark.parametrize(("header", "reason", "named"), [
    (HEADER.replace(b",currency", b""), "missing_column", "currency"),
    (HEADER.rstrip() + b",discount\n", "unknown_column", "discount"),
    (HEADER.rstrip() + b",sku\n", "duplicate_column", "sku"),
])
def test_a_missing_or_unknown_column_is_named(header: bytes, reason: str, named: str) -> None:
    checked = check_file(header + row(1) + b"\n" + row(2) + b"\n")
    [rejected] = checked.rejected
    assert (rejected.line, rejected.reason, rejected.lines) == (0, reason, 3)
    assert named in rejected.detail and checked.accounted


def test_unterminated_quote_costs_one_line_and_a_real_span_is_kept_whole() -> None:
    body = [row(i) for i in range(1, 11)]
    body[3] = row(4, note=b'"never closed')
    assert verdicts(HEADER + b"\n".join(body) + b"\n") == {
        **{i: "ok" for i in range(2, 12) if i != 5}, 5: "bad_quoting"}
    data = HEADER + row(1, note=b'"left\n\nat gate"') + b"\n" + row(2) + b"\n"
    checked = check_file(data)
    [span] = checked.rejected
    assert (span.line, span.lines, span.reason) == (2, 3, "embedded_newline")
    assert "lines 2-4" in span.detail and checked.accounted


def test_a_span_never_swallows_a_line_quarantined_for_its_bytes() -> None:
    data = HEADER + row(1, note=b'"open') + b"\n\xff\xfe\nclose\"\n" + row(2) + b"\n"
    assert verdicts(data) == {2: "bad_quoting", 3: "invalid_utf8", 4: "bad_quoting", 5: "ok"}


def test_a_span_longer_than_the_limit_is_not_a_record() -> None:
    lines = [row(1, note=b'"start')] + [b"filler"] * MAX_SPAN + [b'end"']
    got = verdicts(HEADER + b"\n".join(lines) + b"\n")
    assert got[2] == "bad_quoting" and got[MAX_SPAN + 3] == "bad_quoting"


def test_huge_lines_and_many_odd_quotes_stay_cheap_and_accounted() -> None:
    # a 3 MB field (pyarrow's blocks must hold a whole line), then 20,000 inch marks
    data = HEADER + row(1, note=b"z" * 3_000_000) + b"\n" + b"".join(
        row(i, note=b'5" box') + b"\n" for i in range(2, 20_002))
    checked = check_file(data)
    assert checked.accounted and checked.rows == 0
    assert Counter(r.reason for r in checked.rejected) == {"oversized_field": 1,
                                                           "bad_quoting": 20_000}


def test_nul_repeated_header_blank_lines() -> None:
    data = HEADER + row(1) + b"\n\n  \n" + HEADER + row(2, warehouse=b"Ly\x00on") + b"\n,,,\n"
    checked = check_file(data)
    assert checked.skipped == {"header": 1, "blank": 3, "repeated_header": 1}
    assert [(r.line, r.reason) for r in checked.rejected] == [(6, "nul_byte")]
    assert checked.rows == 1 and checked.accounted


def test_gzip_is_decompressed_and_archives_are_refused() -> None:
    plain = HEADER + row(1) + b"\n"
    checked = check_file(gzip.compress(plain))
    assert checked.rows == 1 and "gzip" in checked.note
    [refused] = check_file(b"PK\x03\x04" + b"\x00" * 40).rejected
    assert refused.reason == "compressed_file" and "extract" in refused.detail


def test_latin1_reported_as_such_and_read_with_the_encoding_parameter() -> None:
    data = HEADER + row(1, warehouse="München".encode("latin-1")) + b"\n" + row(2) + b"\n"
    assert verdicts(data) == {2: "invalid_utf8", 3: "ok"}
    assert "encoding=latin-1" in check_file(data).rejected[0].detail
    assert check_file(data).note == "1 of 3 lines are not utf-8"
    checked = check_file(data, encoding="latin-1")
    assert checked.rows == 2 and checked.table["warehouse"][0].as_py() == "München"


@pytest.mark.parametrize(("data", "reason", "lines"), [
    (b"", "empty_file", 0), (HEADER, "header_only", 1),
    (b"\x89JNK\x00\xff\xfe" + bytes(range(256)) * 8, "bad_header", None),
    (b"sku;quantity\nA;1\n", "bad_header", 2),
])
def test_whole_broken_files_are_quarantined_with_a_reason(data: bytes, reason: str,
                                                          lines: int | None) -> None:
    checked = check_file(data)
    assert checked.rows == 0 and [(r.line, r.reason) for r in checked.rejected] == [(0, reason)]
    assert checked.accounted and (lines is None or checked.lines == lines)


def test_never_raises_on_garbage_and_always_accounts() -> None:
    rng = random.Random(7)
    alphabet = b'abc,"\n\r\xff\xc3\xbc\x00019-:TZ. '
    for _ in range(300):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        checked = check_file(HEADER + body)
        assert checked.accounted
        assert len({r.line for r in checked.rejected}) == len(checked.rejected)


PIECES = [b"a", b",", b'"', b'""', b"\n", b"\r", b"\r\n", b"\xff", b"\xc3\xbc", b"\x00", b" ",
          b"5", b"12.50", b"2024-03-01T12:34:56Z", row(1), HEADER.rstrip(), b",,,,,,,,"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.sampled_from(["utf-8", "latin-1"]))
def test_every_line_is_accounted_for_whatever_the_bytes(pieces, encoding) -> None:
    checked = check_file(HEADER + b"".join(pieces), encoding)
    assert checked.accounted, (checked.lines, checked.rows, checked.rejected, checked.skipped)
    lines = [r.line for r in checked.rejected] + [int(n) for n in checked.line_numbers]
    assert len(lines) == len(set(lines))  # one verdict per line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_undecodable_lines_are_found_as_decoding_each_line_finds_them(pieces) -> None:
    lines = (HEADER + b"".join(pieces)).splitlines()
    expected = []
    for i, line in enumerate(lines, 1):
        try:
            line.decode()
        except UnicodeDecodeError as exc:
            expected.append((i, f"byte 0x{line[exc.start]:02x} at column {exc.start + 1}"))
    found = [(r.line, r.detail.split(" is not")[0]) for r in csvlines.decode_lines(lines, "utf-8")[1]]
    assert found == expected


def test_validator_agrees_with_the_generator(tmp_path: Path) -> None:
    """Every generated file yields exactly the valid rows, reasons and lines its manifest says."""
    spec = Spec(suppliers=2, files_per_supplier=30, rows_per_file=80, malformed_fraction=0.5)
    folder = csvgen.ensure_dataset(tmp_path, spec)
    for exp in csvgen.expectations(folder):
        checked = check_file((folder / exp.name).read_bytes())
        assert checked.accounted and checked.lines == exp.lines, exp.name
        if exp.file_reason:
            assert [r.reason for r in checked.rejected] == [exp.file_reason]
            continue
        assert checked.rows == exp.valid, exp.name
        assert Counter(r.reason for r in checked.rejected) == exp.malformed, exp.name


def test_rule_reasons_are_documented() -> None:
    assert all(reason in rowrule.__doc__ for reason in rowrule.FIELD_REASONS if reason)
