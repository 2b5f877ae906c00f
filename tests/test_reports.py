"""Reports from a saved run folder of the older schema (v1), the schema gate, and `run`."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.exitcodes import EXIT_OK, EXIT_USAGE
from harness.records import SCHEMA_VERSION, load_run

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"


@pytest.fixture()
def v1_run(tmp_path) -> Path:
    """A copy of the v1 fixture (reports are written into the run folder)."""
    run_dir = tmp_path / "run_v1"
    shutil.copytree(FIXTURE, run_dir)
    return run_dir


def test_fixture_is_a_real_v1_folder_and_is_upgraded():
    stored = json.loads((FIXTURE / "run.json").read_text())
    assert stored["schema_version"] == 1 and "budgets" not in stored
    run = load_run(FIXTURE)
    assert run.run["schema_version"] == SCHEMA_VERSION == 3
    assert run.run["stored_schema_version"] == 1
    assert run.run["budgets"] == {"error_budget": 0.0, "p99_budget_ms": None, "min_gain": 0.2,
                                  "max_memory_mb": None}


def test_markdown_report_from_v1(v1_run):
    assert main(["report", str(v1_run), "--format", "md"]) == EXIT_OK
    text = (v1_run / "report.md").read_text()
    for heading in ("## Verdict", "## What was run", "## Comparison table",
                    "## Verify results", "## Cells", "## Environment"):
        assert heading in text
    assert "**Recommended: threads**" in text
    assert "| mode | run s [CI] | CI level | speedup vs baseline | latency p99 ms |" in text
    assert "units=12" in text and "logical cores" in text
    assert "upgraded from 1" in text
    assert (v1_run / "table.md").exists()  # the default behaviour stays


def test_html_json_csv_reports_from_v1(v1_run):
    assert main(["report", str(v1_run), "--format", "html,json,csv"]) == EXIT_OK
    html = (v1_run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'id="comparison"' in html
    images = html.split('src="data:image/png;base64,')[1:]
    assert len(images) >= 5  # makespan, CDF, CPU, RSS, per-group latency
    assert base64.b64decode(images[0].split('"', 1)[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html  # self-contained
    data = json.loads((v1_run / "report.json").read_text())
    assert data["verdict"]["recommended"] == "threads"
    assert data["stored_schema_version"] == 1
    assert {row["mode"] for row in data["table"]} >= {"serial", "threads", "processes"}
    csv = (v1_run / "report.csv").read_text().splitlines()
    assert "verdict" in csv[0].split(",") and any(",recommended," in line for line in csv)


def test_budget_options_change_the_verdict(v1_run, capsys):
    # p99 latency from due (t0: a batch): threads 12.3 ms, asyncio 12.9 ms, serial 64.7 ms.
    assert main(["report", str(v1_run), "--format", "json", "--output", "-",
                 "--p99-budget", "12.5"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"]["status"]["asyncio"] == "discarded"
    assert "over the p99 budget 12.5 ms" in " ".join(data["verdict"]["reasons"]["asyncio"])
    assert data["verdict"]["recommended"] == "threads"
    assert main(["report", str(v1_run), "--format", "json", "--output", "-",
                 "--p99-budget", "10"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["verdict"]["status"]["threads"] == "discarded"


def test_newer_schema_is_refused_with_a_clear_message(v1_run, capsys):
    run = json.loads((v1_run / "run.json").read_text())
    (v1_run / "run.json").write_text(json.dumps(dict(run, schema_version=99)))
    assert main(["report", str(v1_run), "--format", "md"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "schema_version 99 is newer than this harness understands (3)" in err
    assert not (v1_run / "report.md").exists()


def test_run_writes_reports_and_budgets_by_default(tmp_path):
    code = main(["run", "calibrate", "--modes", "serial,threads", "--repeat", "1",
                 "--no-warmup", "--param", "units=8", "--param", "cost_ms=2",
                 "--out", str(tmp_path), "--no-progress", "--error-budget", "2%",
                 "--min-gain", "30%"])
    assert code == EXIT_OK
    [run_dir] = (tmp_path / "calibrate").iterdir()
    assert (run_dir / "report.md").exists() and (run_dir / "report.html").exists()
    stored = json.loads((run_dir / "run.json").read_text())
    assert stored["schema_version"] == 3
    assert stored["budgets"] == {"error_budget": 0.02, "p99_budget_ms": None,
                                 "max_memory_mb": None, "min_gain": 0.3, "metrics": {}}
    assert "error budget 2.0% of units" in (run_dir / "report.md").read_text()


def test_report_formats_match_the_renderers():
    from harness.commands.report import FORMATS
    from harness.report.export import RENDERERS

    assert tuple(RENDERERS) == FORMATS
