"""Declared metrics end to end: a column in every table, a budget for the verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness.analysis.table import display_frame, terminal_columns
from harness.analysis.verdict import analyze
from tests.runhelp import run_scenario

SCENARIO = '''
from harness.scenario import Check, Metric, Unit

METRICS = (Metric("duplicates", "invoices", help="invoices issued twice"),)

def units(ctx):
    return [Unit(f"u{i}") for i in range(4)]

def work(unit, ctx):
    return None

def verify(ctx):
    twice = 0 if ctx.mode == "serial" else 2  # a stand-in: the finding, per mode
    return [Check("no invoice issued twice", 0, twice, twice == 0, metric="duplicates")]
'''


def _scenario(tmp_path):
    path = tmp_path / "invoices.py"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def test_a_declared_metric_is_a_column_and_a_budget(tmp_path):
    run = run_scenario(tmp_path / "out", str(_scenario(tmp_path)), ["serial", "threads"])
    analysis = analyze(run)
    shown = display_frame(analysis.table).set_index("mode")
    assert shown.loc["serial", "duplicates"] == "0" and shown.loc["threads[8]", "duplicates"] == "2"
    assert "duplicates" in terminal_columns(analysis.table)
    # As a budget: the mode over it is discarded, with the reason.
    budgeted = analyze(run, metrics={"duplicates": 0}).verdict
    assert budgeted.status["threads[8]"] == "discarded"
    assert "duplicates 2 over its budget 0" in " ".join(budgeted.reasons["threads[8]"])
    # A looser budget lets it through (it still fails verify: that is not the budget's doing).
    assert not any("budget" in r for r in analyze(run, metrics={"duplicates": 5})
                   .verdict.reasons["threads[8]"])


def test_a_budget_on_an_undeclared_metric_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(_scenario(tmp_path)), "--modes", "serial",
         "--repeat", "1", "--no-warmup", "--budget", "dupes=0", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="120"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--budget dupes" in done.stderr and "declared: duplicates" in done.stderr
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_metrics_are_recorded_with_the_run(tmp_path):
    run = run_scenario(tmp_path / "out", str(_scenario(tmp_path)), ["serial"])
    assert run.run["scenario"]["metrics"][0]["name"] == "duplicates"
    stored = json.loads((run.path / "run.json").read_text())
    assert stored["scenario"]["metrics"][0]["unit"] == "invoices"
