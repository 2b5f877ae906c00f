"""Write tests/data/nasty/: supplier files with the damage real feeds carry, and
expected.json, what each must yield. The expectations are written here by hand, next to
each file, not computed by the pipeline: they are what a person reading the file says.

Run from the repository root: python tests/data/make_nasty.py (the files are committed;
run it again only to change the corpus).
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "nasty"
HEADER = "supplier_id,order_id,sku,quantity,unit_price,currency,ts,warehouse,note"


def good(i: int, **changes: str) -> str:
    fields = {"supplier_id": "S07", "order_id": f"S07-00001-{i:06d}", "sku": f"SKU-{i:06d}",
              "quantity": str(i + 1), "unit_price": "12.50", "currency": "EUR",
              "ts": "2024-03-01T12:34:56Z", "warehouse": "Lyon", "note": ""}
    fields.update(changes)
    return ",".join(fields.values())


def lf(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def rows(n: int, start: int = 1) -> list[str]:
    return [good(i) for i in range(start, start + n)]


def expect(lines: int, loaded: int, quarantined: dict | None = None,
           skipped: dict | None = None, kind: str = "") -> dict:
    return {"kind": kind, "lines": lines, "loaded": loaded, "quarantined": quarantined or {},
            "skipped": {"header": 1, **(skipped or {})} if skipped != {} else {}}


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, data)
    return buf.getvalue()


CASES: dict[str, tuple[bytes, dict]] = {
    "bom.csv": (b"\xef\xbb\xbf" + lf(HEADER, *rows(5)),
                expect(6, 5, kind="UTF-8 byte order mark")),
    "crlf.csv": (lf(HEADER, *rows(5)).replace(b"\n", b"\r\n"),
                 expect(6, 5, kind="CRLF line endings, header included")),
    "mixed_endings.csv": ((HEADER + "\r\n" + good(1) + "\n" + good(2) + "\r\n" + good(3) + "\r"
                           + good(4) + "\n").encode(),
                          expect(5, 4, kind="LF, CRLF and CR mixed")),
    "no_final_newline.csv": (lf(HEADER, *rows(3))[:-1],
                             expect(4, 3, kind="last line without a line break")),
    "reordered_columns.csv": (lf("ts,warehouse,note,supplier_id,order_id,sku,quantity,"
                                 "unit_price,currency",
                                 *["2024-03-01T12:34:56Z,Lyon,,S07,S07-R-%d,SKU-%d,%d,1.00,EUR"
                                   % (i, i, i) for i in range(1, 5)]),
                              expect(5, 4, kind="columns in another order")),
    "header_case_spaces.csv": (lf(" Supplier_ID , ORDER_ID,sku,Quantity,unit_price,currency,"
                                  "ts,warehouse,Note ", *rows(3)),
                               expect(4, 3, kind="header with capitals and spaces")),
    "quoted_everything.csv": (lf(",".join(f'"{c}"' for c in HEADER.split(",")),
                                 *[",".join(f'"{v}"' for v in good(i).split(","))
                                   for i in range(1, 4)]),
                              expect(4, 3, kind="every field quoted (spreadsheet export)")),
    "missing_column.csv": (lf(HEADER.replace(",currency", ""),
                              *[good(i).replace(",EUR", "") for i in range(1, 4)]),
                           expect(4, 0, {"missing_column": 1}, {},
                                  kind="a column missing")),
    "unknown_column.csv": (lf(HEADER + ",discount", *[good(i) + ",5%" for i in range(1, 4)]),
                           expect(4, 0, {"unknown_column": 1}, {}, kind="an unknown column")),
    "duplicate_column.csv": (lf(HEADER + ",sku", *[good(i) + ",X" for i in range(1, 3)]),
                             expect(3, 0, {"duplicate_column": 1}, {},
                                    kind="a column named twice")),
    "nul_byte.csv": (lf(HEADER, *rows(4), good(5, warehouse="Ly\0on"), *rows(5, 6)),
                     expect(11, 9, {"nul_byte": 1}, kind="a NUL byte in one row")),
    "unterminated_quote.csv": (lf(HEADER, *rows(3), good(4, note='"never closed'), *rows(6, 5)),
                               expect(11, 9, {"bad_quoting": 1},
                                      kind="unterminated quote in row 4 of 10")),
    "two_unterminated_quotes.csv": (lf(HEADER, good(1, note='"open'), *rows(3, 2),
                                       good(5, note='"open again'), good(6)),
                                    expect(7, 4, {"bad_quoting": 2},
                                           kind="two unterminated quotes")),
    "stray_quotes.csv": (lf(HEADER, good(1, note='5" x 3" box'), good(2, warehouse='Ly"on'),
                            *rows(3, 3)),
                         expect(6, 3, {"bad_quoting": 2}, kind="quotes inside unquoted fields")),
    "embedded_newline.csv": (lf(HEADER, *rows(2), good(3, note='"left at gate\nsee driver"'),
                                *rows(2, 4)),
                             expect(7, 4, {"embedded_newline": 1},
                                    kind="quoted field spanning two lines")),
    "repeated_header.csv": (lf(HEADER, *rows(3), HEADER, *rows(3, 4)),
                            expect(8, 6, skipped={"repeated_header": 1},
                                   kind="two exports concatenated (header repeated)")),
    "blank_lines.csv": (lf("", HEADER, good(1), "", good(2), "   ", good(3), ",,,,,,,,"),
                        expect(8, 3, skipped={"blank": 4},
                               kind="blank, spaces-only and commas-only lines")),
    "wrong_column_count.csv": (lf(HEADER, good(1), good(2) + ",EXTRA", ",".join(good(3).split(",")[:7]),
                                  good(4)),
                               expect(5, 2, {"wrong_column_count": 2},
                                      kind="rows with a field too many or too few")),
    "quantity_forms.csv": (lf(HEADER, good(1), good(2, quantity="+12"), good(3, quantity=" 12"),
                              good(4, quantity="1_000"), good(5, quantity="1e3"),
                              good(6, quantity="12.0"), good(7, quantity="-3"),
                              good(8, quantity='"1,5"')),
                           expect(9, 2, {"non_numeric_quantity": 6},
                                  kind="quantity as +12, ' 12', 1_000, 1e3, 12.0, \"1,5\"")),
    "price_forms.csv": (lf(HEADER, good(1, unit_price="12"), good(2, unit_price="12.5"),
                           good(3, unit_price="1e3"), good(4, unit_price="12.345"),
                           good(5, unit_price='"1,234.50"'), good(6, unit_price=" 12.50"),
                           good(7, unit_price="12.")),
                        expect(8, 2, {"non_numeric_price": 4, "price_scale": 1},
                               kind="price as 1e3, 12.345, \"1,234.50\", ' 12.50', 12.")),
    "timestamp_forms.csv": (lf(HEADER, good(1, ts="2024-03-01 12:34:56+01:00"),
                               good(2, ts="2024-03-01T12:34:56.123456+0530"),
                               good(3, ts="now"), good(4, ts="epoch"),
                               good(5, ts="2024-03-01T12:34:56"), good(6, ts="2024-02-30T08:00:00Z"),
                               good(7, ts="2024-03-01T24:00:00Z"), good(8, ts="2024-03-01"),
                               good(9, ts="2024-02-29T23:59:59-05")),
                            expect(10, 3, {"bad_timestamp": 5, "timestamp_without_zone": 1},
                                   kind="timestamps: now, epoch, no zone, 30 Feb, 24:00")),
    "missing_field.csv": (lf(HEADER, good(1, sku=""), good(2, supplier_id=""), good(3)),
                          expect(4, 1, {"missing_field": 2}, kind="required fields empty")),
    "oversized_field.csv": (lf(HEADER, good(1, note="x" * 2000), *rows(2, 2)),
                            expect(4, 2, {"oversized_field": 1}, kind="a 2,000-byte field")),
    "latin1.csv": ((HEADER + "\n" + "\n".join([good(1, warehouse="München"), good(2),
                                              good(3, warehouse="Malmö"), good(4), good(5)])
                    + "\n").encode("latin-1"),
                   expect(6, 3, {"invalid_utf8": 2}, kind="a Latin-1 export read as UTF-8")),
    "utf16.csv": ((HEADER + "\r\n" + "\r\n".join(rows(3, 1)) + "\r\n").encode("utf-16"),
                  expect(4, 3, kind="UTF-16 with a byte order mark")),
    "gzip.csv.gz": (gzip.compress(lf(HEADER, *rows(5)), mtime=0),
                    expect(6, 5, kind="gzip-compressed file")),
    "gzip_named_csv.csv": (gzip.compress(lf(HEADER, *rows(4)), mtime=0),
                           expect(5, 4, kind="gzip content under a .csv name")),
    "gzip_truncated.csv.gz": (gzip.compress(lf(HEADER, *rows(50)), mtime=0)[:60],
                              expect(0, 0, {"bad_compressed_file": 1}, {},
                                     kind="a truncated gzip download")),
    "archive.zip": (zipped("orders.csv", lf(HEADER, *rows(3))),
                    expect(0, 0, {"compressed_file": 1}, {}, kind="a zip archive")),
    "empty.csv": (b"", expect(0, 0, {"empty_file": 1}, {}, kind="0 bytes")),
    "header_only.csv": (lf(HEADER), expect(1, 0, {"header_only": 1},
                                           kind="a header and no records")),
    "not_a_csv.csv": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
                      expect(5, 0, {"bad_header": 1}, {}, kind="a PDF saved as .csv")),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    expected = {}
    for name, (data, exp) in CASES.items():
        (OUT / name).write_bytes(data)
        expected[name] = exp
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(CASES)} files in {OUT}")


if __name__ == "__main__":
    main()
