"""The fast screen (harness.workloads.csvfast) against the full reader: whenever the screen
passes a file, the full reader accepts every record of it with the same values, lines and
accounting (a hypothesis property over nasty rows, BOM, CRLF and quotes); and a clean
file's own lines, COPYed, store what the typed loaders store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.services.postgres import connect
from harness.workloads import csvfast, pgload
from harness.workloads.csvgen import COLUMNS, HEADER
from harness.workloads.csvvalidate import check_file

GOOD = ["S01", "S01-00001-000001", "SKU-000001", "5", "12.50", "EUR", "2024-03-01T12:34:56Z",
        "München", ""]
NASTY = {"quantity": ["+12", " 12", "1_000", "1e3", "12 ", "-0", "007", "9999999999", ""],
         "unit_price": ["12.345", "1e3", "12.3", "-1.00", ".5", "12.", "1,5", "NaN", ""],
         "ts": ["now", "epoch", "2024-03-01T12:34:56", "2024-03-01 12:34:56+01:00",
                "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-03-01T12:34:56.1234567Z",
                "2024-03-01T24:00:00Z", "2024-03-01T12:34:56+0530", "2024-03-01T12:34:56+16:00",
                "2024-03-01T12:34:56-1559", "0001-01-01T00:00:00+05:00",
                "9999-12-31T23:59:59-05:00", ""],
         "note": ["", "x" * 1025, "a\x00b", 'say "hi"', "fragile, keep dry", "\ufeff", " "]}
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)


@st.composite
def records(draw) -> bytes:
    """One record: mostly good fields (so that many records sit on the edge of the rule,
    one field off), some nasty, some random; any field may be quoted."""
    fields = []
    for column, good in zip(COLUMNS, GOOD):
        pick = draw(st.integers(0, 19))
        value = (good if pick < 18 else TEXT if pick == 19 else
                 st.sampled_from(NASTY.get(column, ["", " x", "Łódź"])))
        raw = (value if isinstance(value, str) else draw(value)).encode()
        if draw(st.integers(0, 19)) == 0:  # quoted, quotes doubled, or a stray quote
            raw = draw(st.sampled_from([b'"%s"' % raw.replace(b'"', b'""'), b'"' + raw]))
        fields.append(raw)
    extra = draw(st.sampled_from([[]] * 6 + [[b"EXTRA"], None]))
    bom = draw(st.sampled_from([b""] * 9 + [b"\xef\xbb\xbf"]))  # a concatenated export's
    return bom + b",".join(fields[:-1] if extra is None else fields + extra)


@st.composite
def files(draw) -> bytes:
    bom = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf"]))
    header = draw(st.sampled_from([HEADER] * 4 + [HEADER.upper(),
                                   ",".join(reversed(COLUMNS)).encode() + b"\n"]))
    rows = draw(st.lists(st.one_of(records(), st.just(b",".join(g.encode() for g in GOOD))),
                         min_size=0, max_size=6))
    ends = draw(st.lists(st.sampled_from([b"\n"] * 3 + [b"\r\n"] * 2 + [b"\r"]),
                         min_size=len(rows) + 1, max_size=len(rows) + 1))
    last = draw(st.booleans())  # does the last record end with a line end?
    body = b"".join(r + e for r, e in zip(rows, ends[1:]))
    if rows and not last:
        body = body[:-len(ends[-1])]
    return bom + header.replace(b"\n", ends[0]) + body


def _outcome(data: bytes, fast: bool) -> tuple:
    c = check_file(data, fast=fast)
    table = None if c.table is None else c.table.to_pylist()
    return (c.lines, c.rows, table, list(c.line_numbers), c.skipped, c.note,
            [(r.line, r.reason, r.lines) for r in c.rejected])


@settings(max_examples=500, deadline=None)
@given(files())
def test_the_screen_agrees_with_the_full_reader(data: bytes) -> None:
    fast = _outcome(data, fast=True)
    assert fast == _outcome(data, fast=False)
    if csvfast.screen(data) is not None:  # passed: every record is valid
        assert fast[6] == [] and fast[1] == fast[0] - 1


@settings(max_examples=200, deadline=None)
@given(records())
def test_a_record_the_screen_passes_the_rule_accepts(record: bytes) -> None:
    """Per record, with nothing else in the file: the screen accepts only what the rule does."""
    data = HEADER + record + b"\n"
    if csvfast.screen(data) is not None:
        checked = check_file(data, fast=False)
        assert (checked.rows, checked.rejected) == (1, [])


CLEAN = HEADER + b"\r\n".join([
    b'S01,o1,SKU-1,5,12.5,EUR,2024-03-01 12:34:56+01:00,M\xc3\xbcnchen,"fragile, keep dry"',
    b"S01,o2,SKU-2,-3,0.01,EUR,2024-02-29T23:59:59.123456-05,Lyon,",
    b'S01,o6,SKU-6,9,999.99,SEK,2024-12-31T23:00:00Z,Malm\xc3\xb6,"said ""urgent"""',
    b"S01,o7,SKU-7,1,1,SEK,2024-12-31T23:00:00+0100,Lyon, spaced ",
])


def test_the_screen_passes_clean_files_and_sends_their_own_lines() -> None:
    assert csvfast.screen(CLEAN) is not None
    assert csvfast.screen(b"\xef\xbb\xbf" + CLEAN.replace(b"\r\n", b"\n") + b"\n") is not None
    plan = pgload.plan_file("s01/c.csv", 7, CLEAN)
    assert plan.checked.clean is not None and plan.rows == 4
    assert bytes(plan.payload()) == b"".join(
        b"7,%d,%s\n" % (i, line) for i, line in enumerate(CLEAN[len(HEADER):].split(b"\r\n"), 2))


# plain records, one the rule accepts only once parsed (a quoted quantity), one it refuses
DIRTY = (CLEAN.replace(b"\r\nS01,o2,SKU-2,-3,", b'\r\nS01,o2,SKU-2,"-3",')
         + b"\r\nS01,o8,SKU-8,+1,1,SEK,now,Lyon,")


def test_a_file_with_bad_lines_keeps_its_plain_records_as_they_are() -> None:
    plan = pgload.plan_file("s01/d.csv", 7, DIRTY)
    c = plan.checked
    assert c.clean is not None and list(c.clean.numbers) == [2, 4, 5]
    assert list(c.judged_lines) == [3] and [r.line for r in c.rejected] == [6]
    assert list(c.line_numbers) == [2, 3, 4, 5] and c.table["quantity"].to_pylist() == [
        "5", "-3", "9", "1"]
    lines = DIRTY[len(HEADER):].split(b"\r\n")
    sent = bytes(plan.payload()).splitlines()
    assert sent[:3] == [b"7,%d,%s" % (n, lines[n - 2]) for n in (2, 4, 5)]
    assert sent[3].startswith(b'7,3,"S01","o2","SKU-2","-3"')


@pytest.mark.parametrize("damage", [b"\r", b"\n\n", b"\n" + HEADER, b"\x00", b'"'])
def test_any_damage_sends_the_file_to_the_full_reader(damage: bytes) -> None:
    assert csvfast.screen(CLEAN.replace(b",Lyon,", b",Lyon" + damage + b",", 1)) is None


@pytest.mark.db
def test_own_lines_store_what_the_typed_loaders_store(postgres, schema: str) -> None:
    with connect(postgres.dsn, autocommit=True) as conn:
        for file_id, loader, data in ((1, "copy", CLEAN), (2, "executemany", CLEAN),
                                      (3, "copy", DIRTY), (4, "executemany", DIRTY)):
            result = pgload.load_file(conn, schema, f"s01/{file_id}.csv", file_id, data,
                                      loader=loader)
            assert (result.rows, result.quarantined, result.lines) == (
                (4, 0, 5) if data is CLEAN else (4, 1, 6))
        staged = conn.execute(
            f"SELECT file_id, line, quantity, unit_price::text, ts, warehouse, note IS NULL, note "
            f"FROM {schema}.staging ORDER BY file_id, line").fetchall()
    by_file = [[r[1:] for r in staged if r[0] == i] for i in (1, 2, 3, 4)]
    assert all(rows == by_file[0] for rows in by_file) and len(by_file[0]) == 4
    copied = by_file[0]
    assert [r[-1] for r in copied] == ["fragile, keep dry", "", 'said "urgent"', " spaced "]
