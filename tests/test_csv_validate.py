"""Validation of supplier CSV files: the clean-file screen, per-record reasons and line
numbers, whole broken files, and agreement with what the generator says it wrote."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from harness.workloads import csvgen, pgload
from harness.workloads.csvgen import HEADER, Spec
from harness.workloads.csvvalidate import check_rows, screen

SERVER_REFUSES = {"invalid_utf8", "wrong_column_count", "non_numeric_quantity", "bad_timestamp"}
GOOD = b"S01,S01-00001-000001,SKU-000001,5,12.50,EUR,2024-03-01T12:34:56Z,M\xc3\xbcnchen,"


def row(i: int, **changes: bytes) -> bytes:
    fields = GOOD.split(b",")
    fields[1] = b"S01-00001-%06d" % i
    for name, value in changes.items():
        fields[csvgen.COLUMNS.index(name)] = value
    return b",".join(fields)


def test_clean_file_takes_the_raw_path() -> None:
    data = HEADER + b"\n".join([row(1), row(2, note=b'"fragile, keep dry"'),
                                row(3, note=b'"said ""urgent"""')]) + b"\n"
    result = screen(data)
    assert result.clean and len(result.lines) == 3 and result.rejected is None
    plan = pgload.plan_file("s01/a.csv", 7, data)
    assert plan.path == "copy" and plan.rows == 3
    assert plan.payload.splitlines()[1] == b"7,3," + row(2, note=b'"fragile, keep dry"')


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (HEADER, "header_only"),
    (b"\x89JNK\x00\xff\xfe" + bytes(range(256)) * 8, "bad_header"),
    (b"sku;quantity\nA;1\n", "bad_header"),
])
def test_whole_broken_files_are_quarantined_with_a_reason(data: bytes, reason: str) -> None:
    plan = pgload.plan_file("s01/x.csv", 1, data)
    assert plan.path == "rejected" and plan.rows == 0 and not plan.payload
    assert [(r.line, r.reason) for r in plan.rejected] == [(0, reason)]
    assert plan.rejected[0].detail


def test_non_utf8_file_rows_quarantined_ascii_rows_kept() -> None:
    text = "\n".join(["S01,o1,SKU-1,5,1.00,EUR,2024-03-01T12:34:56Z,München,",
                      "S01,o2,SKU-2,5,1.00,EUR,2024-03-01T12:34:56Z,Lyon,",
                      "S01,o3,SKU-3,5,1.00,EUR,2024-03-01T12:34:56Z,Malmö,"]) + "\n"
    data = HEADER + text.encode("latin-1")
    # The screen leaves encoding to the server's COPY; its refusal sends the file here.
    assert screen(data).clean
    plan = pgload.plan_file("s01/latin1.csv", 9, data, force_rows="server: invalid byte sequence")
    assert plan.path == "rows" and plan.rows == 1 and plan.fallback
    assert [(r.line, r.reason) for r in plan.rejected] == [(2, "invalid_utf8"), (4, "invalid_utf8")]
    assert plan.rejected[0].raw == text.encode("latin-1").split(b"\n")[0]  # raw bytes kept
    assert "0xfc" in plan.rejected[0].detail
    assert plan.payload == b"9,3," + text.encode().split(b"\n")[1] + b"\n"


def test_every_row_reason_and_line_numbers() -> None:
    records = [
        row(1),                                            # line 2
        row(2, quantity=b"twelve"),                        # line 3
        row(3, note=b'"left at gate\nsee driver"'),        # lines 4-5 (one record)
        row(4, ts=b"31/12/2024 10:00"),                    # line 6
        row(5) + b",EXTRA",                                # line 7
        row(6, warehouse=b"Port\xff\xfeo"),                # line 8
        row(7, note=b"x" * 2000),                          # line 9
        row(8, ts=b"2024-02-30T08:00:00Z"),                # line 10: not a real day
        row(9, unit_price=b"1.234"),                       # line 11
        row(10, sku=b""),                                  # line 12
        row(11, note=b'"unterminated'),                    # line 13: quote never closes
    ]
    data = HEADER + b"\n".join(records) + b"\n"
    assert not screen(data).clean
    checked = check_rows(data)
    assert [line for line, _ in checked.valid] == [2]
    assert [(r.line, r.reason) for r in checked.rejected] == [
        (3, "non_numeric_quantity"), (4, "embedded_newline"), (6, "bad_timestamp"),
        (7, "wrong_column_count"), (8, "invalid_utf8"), (9, "oversized_field"),
        (10, "bad_timestamp"), (11, "non_numeric_price"), (12, "missing_field"),
        (13, "bad_quoting")]
    oversized = checked.rejected[5]
    assert len(oversized.raw) == len(records[6]) and "2000 bytes" in oversized.detail


def test_oversized_raw_is_cut_and_said() -> None:
    data = HEADER + row(1, note=b"y" * 9000) + b"\n"
    [rejected] = check_rows(data).rejected
    assert len(rejected.raw) == 4096 and "first 4096 kept" in rejected.detail


@pytest.mark.parametrize("body", [
    row(1) + b"\r\n",                                  # CRLF
    row(1),                                            # unterminated last line
    row(1, note=b'"two\nlines"') + b"\n",              # quoted line break
    row(1, note=b"z" * 1500) + b"\n",                  # longer than a field may be
])
def test_screen_sends_doubtful_files_to_the_row_path(body: bytes) -> None:
    result = screen(HEADER + body)
    assert not result.clean and result.why_rows


def test_crlf_records_are_valid_on_the_row_path() -> None:
    data = HEADER + row(1) + b"\r\n" + row(2) + b"\r\n"
    plan = pgload.plan_file("s01/crlf.csv", 1, data)
    assert plan.path == "rows" and plan.rows == 2 and not plan.rejected
    assert b"\r" not in plan.payload


def test_never_raises_on_garbage() -> None:
    rng = random.Random(7)
    alphabet = b'abc,"\n\r\xff\xc3\xbc019-:TZ. '
    for _ in range(300):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        plan = pgload.plan_file("s01/fuzz.csv", 1, HEADER + body)
        if plan.path == "rows":
            lines = {r.line for r in plan.rejected}
            assert len(lines) == len(plan.rejected)  # one verdict per record


def test_validator_agrees_with_the_generator(tmp_path: Path) -> None:
    """Every generated file yields exactly the valid rows and reasons its manifest says."""
    spec = Spec(suppliers=2, files_per_supplier=30, rows_per_file=80, malformed_fraction=0.5)
    folder = csvgen.ensure_dataset(tmp_path, spec)
    paths = Counter()
    for number, exp in enumerate(csvgen.expectations(folder), 1):
        data = (folder / exp.name).read_bytes()
        plan = pgload.plan_file(exp.name, number, data)
        paths[plan.path] += 1
        if plan.path == "copy" and not exp.clean:
            # Only defects the server's typed COPY refuses may pass the screen; the refusal
            # sends the file to the row path (pgload.load_file), emulated here.
            assert set(exp.malformed) <= SERVER_REFUSES, exp.name
            plan = pgload.plan_file(exp.name, number, data, force_rows="server refused")
        if exp.file_reason:
            assert [r.reason for r in plan.rejected] == [exp.file_reason]
            continue
        assert plan.rows == exp.valid, exp.name
        assert Counter(r.reason for r in plan.rejected) == exp.malformed, exp.name
        numbers = [int(line.split(b",", 2)[1]) for line in plan.payload.splitlines()]
        assert len(numbers) == len(set(numbers)) == exp.valid
    # clean files take the raw path; those with bad rows the row path
    assert paths["copy"] and paths["rows"] and paths["rejected"] == 3
