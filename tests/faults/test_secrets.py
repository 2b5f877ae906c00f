"""Results folders are shared: a known password appears nowhere in one, whatever quotes it."""

from __future__ import annotations

import psycopg
import pytest

from tests.faults.faultrun import FaultRun

PASSWORD = "Fault-S3cret-pw-7a41"
OTHER = "Pg-Env-S3cret-93c2"
URL = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test"


def _server_answers() -> bool:
    try:
        psycopg.connect(URL, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


@pytest.mark.skipif(not _server_answers(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_no_secret_in_a_results_folder(tmp_path):
    run = FaultRun(tmp_path, "serial,threads", {"units": 10, "cost_ms": 5, "use": "postgres",
                                                "quote_dsn": "true"},
                   env={"DATABASE_URL": URL, "PGPASSWORD": OTHER}, report=True)
    run.wait()
    files = [p for p in run.run_dir.rglob("*") if p.is_file()]
    assert {"run.json", "units.jsonl", "stderr.txt", "report.md", "report.html"} <= \
        {p.name for p in files}
    leaks = [str(p) for p in files for secret in (PASSWORD, OTHER)
             if secret.encode() in p.read_bytes()]
    assert not leaks
    assert not {"spec.json", "units.pkl"} & {p.name for p in files}  # in scratch, removed
    assert "***" in (run.cell_dir(0) / "stderr.txt").read_text()  # masked, not dropped
    assert not run.leftovers()
