"""csv_ingest on hand-made damaged files and with every loader, through the real pipeline:
the nasty corpus (tests/data/nasty, expectations in its expected.json) in every registered
mode, each loader on a generated data set, and every loader storing the same values."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from harness.executors import all_executors
from harness.services.postgres import connect
from harness.workloads import csvtables, csvverify, pgload, saloaders
from harness.workloads.csvgen import HEADER
from tests.runhelp import run_scenario

NASTY = Path(__file__).resolve().parent / "data" / "nasty"
CORPUS = {"input_dir": NASTY, "source": "local", "ceiling_rows": 0}


def _failed_checks(run) -> list[str]:
    return [f"{c['cell_id']}: {v['name']}: expected {v['expected']}, got {v['actual']} "
            f"({v['detail']})" for c in run.cells for v in c["verify"] if not v["ok"]]


def test_the_corpus_has_twenty_kinds_each_with_its_accounting() -> None:
    expected = json.loads((NASTY / "expected.json").read_text())
    assert len(expected) >= 20
    assert sorted(expected) == sorted(p.name for p in NASTY.iterdir() if p.name != "expected.json")
    for name, e in expected.items():
        quarantined_lines = e["lines"] - e["loaded"] - sum(e["skipped"].values())
        assert quarantined_lines >= 0 and e["kind"], name


@pytest.mark.db
@pytest.mark.parametrize("mode", [*all_executors(), "grouped"])
def test_nasty_corpus_in_every_mode(postgres, tmp_path: Path, mode: str) -> None:
    available, why = all_executors()["threads" if mode == "grouped" else mode].available()
    if not available:
        pytest.skip(f"{mode}: {why}")
    run = run_scenario(tmp_path, "csv_ingest", [mode], CORPUS)
    [cell] = run.cells
    assert cell["status"] == "ok", cell["message"]
    assert not _failed_checks(run), _failed_checks(run)
    names = {v["name"] for v in cell["verify"]}
    assert {"every line accounted for", "quarantine = expected, by reason",
            "lines read and skipped = expected", "staging rows = valid rows expected"} <= names
    assert len(run.units[cell["cell_id"]]) == len(json.loads((NASTY / "expected.json").read_text()))


@pytest.mark.db
@pytest.mark.parametrize("loader", pgload.LOADERS)
def test_every_loader_passes_the_same_verify(postgres, tmp_path: Path, loader: str) -> None:
    params = {"scale": "smoke", "malformed_fraction": 0.5, "source": "local",
              "ceiling_rows": 0, "loader": loader}
    run = run_scenario(tmp_path, "csv_ingest", ["serial", "threads"], params)
    assert [c["status"] for c in run.cells] == ["ok", "ok"], [c["message"] for c in run.cells]
    assert not _failed_checks(run), _failed_checks(run)
    [files] = {v["detail"] for v in run.cells[0]["verify"] if v["name"] == "every file accounted for"}
    assert f"'{loader}': 12" in files  # every file went through the loader asked for


# ------------------------------------------------- every loader stores the same values
MIXED = HEADER + b"\n".join([
    b'S01,o1,SKU-1,5,12.5,EUR,2024-03-01 12:34:56+01:00,M\xc3\xbcnchen,"fragile, keep dry"',
    b"S01,o2,SKU-2,-3,0.01,EUR,2024-02-29T23:59:59.123456-05,Lyon,",
    b"S01,o3,SKU-3,+12,1.00,EUR,2024-03-01T12:34:56Z,Lyon,",       # quarantined: +12
    b"S01,o4,SKU-4,7,12.345,EUR,2024-03-01T12:34:56Z,Lyon,",       # quarantined: scale
    b"S01,o5,SKU-5,7,1.00,EUR,now,Lyon,",                          # quarantined: now
    b'S01,o6,SKU-6,9,999.99,SEK,2024-12-31T23:00:00Z,Malm\xc3\xb6,"said ""urgent"""',
]) + b"\n"


def _load(postgres, schema: str, loader: str, file_id: int) -> pgload.LoadResult:
    name = f"s01/{loader}.csv"
    if loader in saloaders.SA_LOADERS:
        eng = saloaders.engine(lambda: psycopg.connect(postgres.dsn))
        try:
            return saloaders.SA_LOADERS[loader](eng, schema, name, file_id, MIXED)
        finally:
            eng.dispose()
    with connect(postgres.dsn, autocommit=True) as conn:
        return pgload.load_file(conn, schema, name, file_id, MIXED, loader=loader)


@pytest.mark.db
def test_every_loader_stores_the_same_values(postgres, schema: str) -> None:
    for file_id, loader in enumerate(pgload.LOADERS, 1):
        result = _load(postgres, schema, loader, file_id)
        assert (result.rows, result.quarantined, result.lines) == (3, 3, 7), loader
        assert _load(postgres, schema, loader, file_id).skipped  # a re-run adds nothing
    with connect(postgres.dsn, autocommit=True) as conn:
        staged = conn.execute(
            f"SELECT file_id, line, quantity, unit_price::text, "
            f"to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), warehouse, note "
            f"FROM {schema}.staging ORDER BY file_id, line").fetchall()
        reasons = conn.execute(f"SELECT file, line, reason FROM {schema}.quarantine "
                               "ORDER BY file, line").fetchall()
    by_loader = [[r[1:] for r in staged if r[0] == i] for i in range(1, len(pgload.LOADERS) + 1)]
    assert all(rows == by_loader[0] for rows in by_loader), by_loader
    assert by_loader[0] == [
        (2, 5, "12.50", "2024-03-01 11:34:56.000000", "München", "fragile, keep dry"),
        (3, -3, "0.01", "2024-03-01 04:59:59.123456", "Lyon", ""),
        (7, 9, "999.99", "2024-12-31 23:00:00.000000", "Malmö", 'said "urgent"')]
    assert {(line, reason) for _, line, reason in reasons} == {
        (4, "non_numeric_quantity"), (5, "price_scale"), (6, "bad_timestamp")}


# -------------------------------------------------------------- verify has teeth
def _fake_query(account: tuple[int, ...], staged: int, held: tuple[int, int], reasons: dict):
    """A cell's tables as verify's queries see them: one loaded file, s01/a.csv."""
    answers = {csvtables.per_file_query(): [("s01/a.csv", "copy", *account, staged, *held)],
               csvtables.reasons_query(): [("s01/a.csv", r, n) for r, n in reasons.items()],
               csvtables.failed_query(): [], csvtables.duplicates_query(): [(0, 0)],
               csvtables.orphans_query(): [(0,)]}
    return lambda text: answers[text]


EXPECTED = [csvverify.Expected("s01/a.csv", 11, 9, {"nul_byte": 1}, {"header": 1})]


@pytest.mark.parametrize(("account", "staged", "held", "failing"), [
    ((11, 9, 1, 1, 1, 0, 0), 9, (1, 1), set()),                          # all adds up
    ((11, 9, 1, 1, 0, 0, 0), 9, (1, 1), {"every line accounted for",     # a line lost
                                         "lines read and skipped = expected"}),
    ((11, 9, 1, 1, 1, 0, 0), 8, (1, 1), {"every line accounted for",     # a row not staged
                                         "staging rows = valid rows expected"}),
    ((12, 10, 1, 1, 1, 0, 0), 10, (1, 1), {"staging rows = valid rows expected",
                                           "lines read and skipped = expected"}),
])
def test_verify_catches_a_line_that_is_not_accounted_for(account, staged, held, failing) -> None:
    checks = csvverify.reconcile(_fake_query(account, staged, held, {"nul_byte": 1}),
                                 EXPECTED, ["s01/a.csv"])
    assert {c.name for c in checks if not c.ok} == failing, [(c.name, c.detail) for c in checks]


def test_verify_catches_a_wrong_reason_and_a_missing_file() -> None:
    query = _fake_query((11, 9, 1, 1, 1, 0, 0), 9, (1, 1), {"bad_quoting": 1})
    checks = {c.name: c for c in csvverify.reconcile(query, EXPECTED, ["s01/a.csv", "s01/b.csv"])}
    assert not checks["quarantine = expected, by reason"].ok
    assert not checks["every file accounted for"].ok and "s01/b.csv" in checks[
        "every file accounted for"].detail
