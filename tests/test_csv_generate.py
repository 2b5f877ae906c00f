"""The seeded supplier-CSV generator: deterministic, cached, honest about what it wrote."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from pathlib import Path

from harness.workloads import csvgen
from harness.workloads.csvgen import HEADER, ROW_REASONS, Spec

SMALL = Spec(suppliers=2, files_per_supplier=6, rows_per_file=40, malformed_fraction=0.5)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.csv")):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def test_same_spec_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    a = csvgen.ensure_dataset(tmp_path / "a", SMALL)
    b = csvgen.ensure_dataset(tmp_path / "b", SMALL)
    c = csvgen.ensure_dataset(tmp_path / "c", Spec(**{**SMALL.__dict__, "seed": 1}))
    assert a.name == b.name != c.name  # the folder is named by the parameter hash
    assert _digest(a) == _digest(b) != _digest(c)


def test_cached_by_parameter_hash(tmp_path: Path) -> None:
    folder = csvgen.ensure_dataset(tmp_path, SMALL)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert csvgen.ensure_dataset(tmp_path, SMALL) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp  # not generated again
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [folder.name]


def test_concurrent_callers_generate_once(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(csvgen.ensure_dataset(tmp_path, SMALL)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_manifest_matches_files(tmp_path: Path) -> None:
    folder = csvgen.ensure_dataset(tmp_path, SMALL)
    totals = csvgen.manifest(folder)["totals"]
    exps = list(csvgen.expectations(folder))
    assert totals["files"] == len(exps) == SMALL.suppliers * SMALL.files_per_supplier
    assert totals["valid_rows"] == sum(e.valid for e in exps)
    assert totals["malformed_rows"] == sum(sum(e.malformed.values()) for e in exps)
    assert totals["clean_rows"] == sum(e.rows for e in exps if e.clean)
    for e in exps:
        data = (folder / e.name).read_bytes()
        assert len(data) == e.bytes
        assert e.valid + sum(e.malformed.values()) == e.rows
        assert e.name.startswith(e.supplier + "/")
    # one supplier folder per supplier, as the supplier server and the NAS serve them
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["s01", "s02"]


def test_broken_files_of_every_kind(tmp_path: Path) -> None:
    folder = csvgen.ensure_dataset(tmp_path, SMALL)
    exps = list(csvgen.expectations(folder))
    reasons = Counter(e.file_reason for e in exps if e.file_reason)
    assert reasons == {"empty_file": 1, "header_only": 1, "bad_header": 1}
    by_reason = {e.file_reason: (folder / e.name).read_bytes() for e in exps if e.file_reason}
    assert by_reason["empty_file"] == b""
    assert by_reason["header_only"] == HEADER
    assert not by_reason["bad_header"].startswith(HEADER)
    # the Latin-1 export: a file whose accented rows are invalid UTF-8
    latin1 = [e for e in exps if set(e.malformed) == {"invalid_utf8"} and e.malformed["invalid_utf8"] > 2]
    assert latin1, "expected a Latin-1 export among the broken files"


def test_every_row_defect_appears_and_clean_files_remain(tmp_path: Path) -> None:
    spec = Spec(suppliers=2, files_per_supplier=30, rows_per_file=100, malformed_fraction=0.5)
    folder = csvgen.ensure_dataset(tmp_path, spec)
    totals = csvgen.manifest(folder)["totals"]
    assert set(totals["malformed_by_reason"]) == set(ROW_REASONS)
    assert 0 < totals["clean_files"] < totals["files"]
    dirty = [e for e in csvgen.expectations(folder) if e.malformed and not e.file_reason]
    # bad rows cluster: a dirty file has about 2 % bad rows, at least one
    assert all(1 <= sum(e.malformed.values()) <= max(1, e.rows // 10) for e in dirty
               if set(e.malformed) != {"invalid_utf8"})


def test_heavy_tail_on_and_off(tmp_path: Path) -> None:
    flat = Spec(suppliers=2, files_per_supplier=40, rows_per_file=50, malformed_fraction=0.0,
                heavy_tail=False)
    tail = Spec(**{**flat.__dict__, "heavy_tail": True})
    sizes_flat = [e.rows for e in csvgen.expectations(csvgen.ensure_dataset(tmp_path, flat))
                  if not e.file_reason]
    sizes_tail = [e.rows for e in csvgen.expectations(csvgen.ensure_dataset(tmp_path, tail))
                  if not e.file_reason]
    assert set(sizes_flat) == {50}
    mean = sum(sizes_tail) / len(sizes_tail)
    assert max(sizes_tail) > 3 * mean > 3 * min(sizes_tail)


def test_sample_clean_spreads_over_the_data(tmp_path: Path) -> None:
    spec = Spec(suppliers=2, files_per_supplier=30, rows_per_file=100, malformed_fraction=0.2)
    folder = csvgen.ensure_dataset(tmp_path, spec)
    everything = csvgen.sample_clean(folder, 10**9)
    assert everything and all(e.clean and e.rows for e in everything)
    some = csvgen.sample_clean(folder, 1000)
    assert 0 < sum(e.rows for e in some) < sum(e.rows for e in everything)
    assert len({e.supplier for e in some}) == 2  # not just the first files
