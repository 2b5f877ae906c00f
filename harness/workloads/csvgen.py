"""Seeded generator of supplier CSV feeds, cached by parameter hash.

A data set is ``<root>/csv-<hash>/``: one folder per supplier holding its files
(``s01/s01-00001.csv``; the supplier server and the NAS volume serve this layout as is),
``files.csv`` (one line per file with what it should yield) and ``manifest.json`` (the
parameters and the totals). ``manifest.json`` is written last and the folder is renamed
into place, so a data set that exists is complete; a repeat with the same parameters
reuses it instead of generating again.

Malformed data comes in the shapes real feeds carry. ``malformed_fraction`` is the share
of files that contain malformed rows (bad rows cluster in a few bad exports rather than
spreading evenly): such a file has about 2 % bad rows, at least one, each with exactly one
defect of :data:`ROW_REASONS`. A few files are wholly broken: empty, header only, binary
junk, or a Latin-1 export whose accented rows are not UTF-8.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

GENERATOR_VERSION = 2  # 2: files.csv says how many physical lines each file has
COLUMNS = ("supplier_id", "order_id", "sku", "quantity", "unit_price", "currency", "ts",
           "warehouse", "note")
HEADER = (",".join(COLUMNS) + "\n").encode()
MAX_FIELD_BYTES = 1024  # a longer field is "oversized" (the validator uses the same limit)

ROW_REASONS = ("wrong_column_count", "non_numeric_quantity", "bad_timestamp", "invalid_utf8",
               "embedded_newline", "oversized_field")
BROKEN_KINDS = ("empty", "header_only", "junk", "latin1")  # rotated over the broken files
_BROKEN_REASON = {"empty": "empty_file", "header_only": "header_only", "junk": "bad_header"}
BAD_ROW_SHARE = 0.02  # share of rows that are malformed in a file that has malformed rows

_CURRENCIES = ("EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF", "SEK", "PLN")
_WAREHOUSES = ("Rotterdam", "Hamburg", "Lyon", "Zaragoza", "München", "Göteborg", "Łódź",
               "Kraków", "Malmö", "Porto")
_LATIN1_WAREHOUSES = ("Rotterdam", "Hamburg", "Lyon", "München", "Göteborg", "Malmö")
_NOTES = ("", "", "", "", "", "", "", "backorder", "express", "partial delivery",
          '"fragile, keep dry"', '"pallet 3, bay 12"', '"marked ""urgent"" by buyer"')
_BAD_QUANTITIES = ("twelve", "12x", "", "N/A", '"1,5"', "1.5.0")
_BAD_TIMESTAMPS = ("2024-13-01T10:00:00Z", "31/12/2024 10:00", "not a date",
                   "2024-03-01T25:61:00Z", "2024-02-30T08:00:00Z")
_T0 = 1_704_067_200  # 2024-01-01T00:00:00Z: order timestamps fall in 2024


@dataclass(frozen=True)
class Spec:
    """Everything that determines a data set's bytes (its cache key)."""

    suppliers: int = 20
    files_per_supplier: int = 20
    rows_per_file: int = 500
    malformed_fraction: float = 0.1
    heavy_tail: bool = True
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class FileExpectation:
    """What one generated file must yield once ingested."""

    name: str            # path relative to the data set: "s01/s01-00001.csv"
    supplier: str
    rows: int = 0        # data records after the header (0 for a wholly broken file)
    valid: int = 0
    malformed: dict[str, int] = field(default_factory=dict)  # reason -> rows
    file_reason: str = ""  # set when the whole file is rejected (empty, header only, junk)
    bytes: int = 0
    lines: int = 0       # physical lines (LF, CRLF or CR ends a line), header included

    @property
    def clean(self) -> bool:
        return not self.malformed and not self.file_reason


# ------------------------------------------------------------------------------- rows
def _supplier_id(index: int) -> str:
    return f"s{index + 1:02d}"


def _valid_fields(rng: random.Random, sid: str, file_no: int, i: int,
                  warehouses: tuple[str, ...] = _WAREHOUSES) -> list[str]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_T0 + rng.randrange(366 * 86400)))
    return [sid.upper(), f"{sid.upper()}-{file_no:05d}-{i:06d}", f"SKU-{rng.randrange(10**6):06d}",
            str(rng.randint(1, 500)), f"{rng.randint(50, 250000) / 100:.2f}",
            rng.choice(_CURRENCIES), ts, rng.choice(warehouses), rng.choice(_NOTES)]


def _malformed_line(rng: random.Random, fields: list[str], reason: str) -> bytes:
    """One CSV line carrying exactly one defect of kind ``reason``."""
    if reason == "wrong_column_count":
        fields = fields[:-1] if rng.random() < 0.5 else fields + ["EXTRA"]
    elif reason == "non_numeric_quantity":
        fields[3] = rng.choice(_BAD_QUANTITIES)
    elif reason == "bad_timestamp":
        fields[6] = rng.choice(_BAD_TIMESTAMPS)
    elif reason == "embedded_newline":
        fields[8] = '"left at gate\nsee driver"'
    elif reason == "oversized_field":
        fields[8] = "x" * rng.randint(MAX_FIELD_BYTES + 1, 4 * MAX_FIELD_BYTES)
    elif reason == "invalid_utf8":
        # A Latin-1 byte (or stray bytes) in an otherwise UTF-8 line, as a mis-encoded export has.
        fields[7] = "\x00"  # placeholder replaced below
        line = ",".join(fields).encode()
        bad = rng.choice((b"M\xfcnchen", b"G\xf6teborg", b"Port\xff\xfeo"))
        return line.replace(b"\x00", bad) + b"\n"
    else:
        raise ValueError(f"unknown malformed row kind {reason!r}")
    return (",".join(fields) + "\n").encode()


def _file_bytes(rng: random.Random, sid: str, file_no: int, rows: int, dirty: bool,
                broken: str | None) -> tuple[bytes, FileExpectation]:
    exp = FileExpectation(name="", supplier=sid)
    if broken == "empty":
        exp.file_reason = _BROKEN_REASON[broken]
        return b"", exp
    if broken == "header_only":
        exp.file_reason = _BROKEN_REASON[broken]
        return HEADER, exp
    if broken == "junk":
        exp.file_reason = _BROKEN_REASON[broken]
        return b"\x89JNK" + rng.randbytes(rng.randint(1024, 8192)), exp
    exp.rows = rows
    if broken == "latin1":
        # The whole export in Latin-1: the rows with an accented warehouse are invalid UTF-8.
        lines = [HEADER]
        for i in range(rows):
            text = ",".join(_valid_fields(rng, sid, file_no, i, _LATIN1_WAREHOUSES)) + "\n"
            lines.append(text.encode("latin-1"))
            if not text.isascii():
                exp.malformed["invalid_utf8"] = exp.malformed.get("invalid_utf8", 0) + 1
        exp.valid = rows - sum(exp.malformed.values())
        return b"".join(lines), exp
    bad: dict[int, str] = {}
    if dirty:
        count = max(1, round(rows * BAD_ROW_SHARE))
        for i in rng.sample(range(rows), min(rows, count)):
            bad[i] = rng.choice(ROW_REASONS)
    lines = [HEADER]
    for i in range(rows):
        fields = _valid_fields(rng, sid, file_no, i)
        if i in bad:
            lines.append(_malformed_line(rng, fields, bad[i]))
            exp.malformed[bad[i]] = exp.malformed.get(bad[i], 0) + 1
        else:
            lines.append((",".join(fields) + "\n").encode())
    exp.valid = rows - len(bad)
    return b"".join(lines), exp


def _row_counts(spec: Spec, rng: random.Random, total: int) -> list[int]:
    if not spec.heavy_tail:
        return [spec.rows_per_file] * total
    # Lognormal with mean 1 (mu = -sigma^2/2), clamped: most files small, a few 10-20x larger.
    sigma = 1.0
    factors = (min(20.0, max(0.05, rng.lognormvariate(-sigma**2 / 2, sigma)))
               for _ in range(total))
    return [max(1, round(spec.rows_per_file * f)) for f in factors]


def _plan(spec: Spec) -> tuple[list[int], set[int], dict[int, str]]:
    """Row count per file, the dirty files and the broken files (by global file index)."""
    rng = random.Random(f"plan-{spec.seed}")
    total = spec.suppliers * spec.files_per_supplier
    counts = _row_counts(spec, rng, total)
    n_broken = min(total, max(len(BROKEN_KINDS), round(total * 0.001))) if total >= 8 else 0
    order = rng.sample(range(total), total)
    broken = {idx: BROKEN_KINDS[k % len(BROKEN_KINDS)] for k, idx in enumerate(order[:n_broken])}
    rest = order[n_broken:]
    n_dirty = round(len(rest) * spec.malformed_fraction)
    if spec.malformed_fraction > 0 and n_dirty == 0 and rest:
        n_dirty = 1
    return counts, set(rest[:n_dirty]), broken


# -------------------------------------------------------------------------- data set
def dataset_dir(root: Path, spec: Spec) -> Path:
    return Path(root) / f"csv-{spec.key()}"


def ensure_dataset(root: Path, spec: Spec) -> Path:
    """The data set for ``spec`` under ``root``, generated once (concurrent callers wait)."""
    final = dataset_dir(root, spec)
    if (final / "manifest.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be generating the same set
        if (final / "manifest.json").exists():
            return final
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _generate(tmp, spec)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete set from a killed run
        os.rename(tmp, final)
    return final


def _generate(folder: Path, spec: Spec) -> None:
    counts, dirty, broken = _plan(spec)
    totals = {"files": 0, "rows": 0, "valid_rows": 0, "malformed_rows": 0, "bytes": 0,
              "clean_files": 0, "clean_rows": 0, "malformed_by_reason": {},
              "broken_files": {}}
    folder.mkdir(parents=True)
    with open(folder / "files.csv", "w", newline="", encoding="utf-8") as index:
        out = csv.writer(index)
        out.writerow(("name", "supplier", "rows", "valid", "malformed", "file_reason", "bytes",
                      "lines"))
        for s in range(spec.suppliers):
            sid = _supplier_id(s)
            (folder / sid).mkdir()
            for f in range(spec.files_per_supplier):
                idx = s * spec.files_per_supplier + f
                rng = random.Random(f"{spec.seed}-{sid}-{f}")
                data, exp = _file_bytes(rng, sid, f + 1, counts[idx], idx in dirty,
                                        broken.get(idx))
                exp.name, exp.bytes = f"{sid}/{sid}-{f + 1:05d}.csv", len(data)
                exp.lines = len(data.splitlines())
                (folder / exp.name).write_bytes(data)
                out.writerow((exp.name, sid, exp.rows, exp.valid, _encode_reasons(exp.malformed),
                              exp.file_reason, exp.bytes, exp.lines))
                _add_totals(totals, exp)
    manifest = {"generator_version": GENERATOR_VERSION, "spec": asdict(spec),
                "columns": list(COLUMNS), "totals": totals}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _add_totals(totals: dict, exp: FileExpectation) -> None:
    totals["files"] += 1
    totals["rows"] += exp.rows
    totals["valid_rows"] += exp.valid
    totals["bytes"] += exp.bytes
    for reason, n in exp.malformed.items():
        totals["malformed_rows"] += n
        totals["malformed_by_reason"][reason] = totals["malformed_by_reason"].get(reason, 0) + n
    if exp.file_reason:
        totals["broken_files"][exp.file_reason] = totals["broken_files"].get(exp.file_reason, 0) + 1
    if exp.clean:
        totals["clean_files"] += 1
        totals["clean_rows"] += exp.rows


def _encode_reasons(reasons: dict[str, int]) -> str:
    return ";".join(f"{k}:{v}" for k, v in sorted(reasons.items()))


def _decode_reasons(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (part.split(":") for part in text.split(";") if part)}


def manifest(folder: Path) -> dict:
    """The data set's parameters and totals."""
    return json.loads((Path(folder) / "manifest.json").read_text())


def expectations(folder: Path) -> Iterator[FileExpectation]:
    """Every file's expectation, streamed from ``files.csv`` (never all in memory at once)."""
    with open(Path(folder) / "files.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            yield FileExpectation(row["name"], row["supplier"], int(row["rows"]),
                                  int(row["valid"]), _decode_reasons(row["malformed"]),
                                  row["file_reason"], int(row["bytes"]), int(row["lines"]))


def file_names(folder: Path) -> Iterator[tuple[str, str]]:
    """(name, supplier) of every file, in generation order."""
    for exp in expectations(folder):
        yield exp.name, exp.supplier


def sample_clean(folder: Path, max_rows: int) -> list[FileExpectation]:
    """Every k-th clean file, k chosen so the rows add up to about ``max_rows``: spread
    over every supplier and the whole range of sizes."""
    clean = [e for e in expectations(folder) if e.clean and e.rows]
    total = sum(e.rows for e in clean)
    return clean[::max(1, math.ceil(total / max(1, max_rows)))]
