"""The scenario API catches mistakes at load: misspelt hooks, wrong signatures, bad Param
defaults; declared metrics; the hook table as the one source of the docs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness.scenario
from harness import discovery
from harness.hookcheck import edit_distance
from harness.scenario import (HOOKS, Check, Metric, Param, ParamError, ScenarioError,
                              hook_table, metric_values)

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = """\
from harness.scenario import Check, Unit

def units(ctx):
    return [Unit("a")]

def work(unit, ctx):
    return None
"""


def write(tmp_path: Path, body: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(MINIMAL + textwrap.dedent(body))
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("typo, hook", [("verfiy", "verify"), ("bund", "bound"),
                                        ("teardwon", "teardown"), ("rest", "reset")])
def test_a_misspelt_hook_is_refused_naming_the_hook_and_line(tmp_path, typo, hook):
    path = write(tmp_path, f"\n\ndef {typo}(ctx, mode=None):\n    return []\n")
    with pytest.raises(ScenarioError) as err:
        discovery.load_path(path)
    message = str(err.value)
    assert f"mine.py:{line_of(path, f'def {typo}')}: " in message
    assert f"{typo!r} looks like the hook {hook!r}" in message and "prefix it with _" in message
    assert "\n" not in message


@pytest.mark.parametrize("typo, hook", [("PARMS", "PARAMS"), ("METRIC", "METRICS"),
                                        ("DESCRIPTON", "DESCRIPTION")])
def test_a_misspelt_declaration_is_refused(tmp_path, typo, hook):
    path = write(tmp_path, f"\n{typo} = ()\nTOTAL_ROWS = 3\n")
    with pytest.raises(ScenarioError, match=rf"mine\.py:{line_of(path, typo)}: '{typo}' "
                                            rf"looks like the hook '{hook}'"):
        discovery.load_path(path)


def test_a_misspelt_required_hook_is_named_before_the_missing_one(tmp_path):
    path = tmp_path / "wrk.py"
    path.write_text("from harness.scenario import Unit\n\ndef units(ctx):\n    return []\n\n\n"
                    "def wrk(unit, ctx):\n    return None\n")
    with pytest.raises(ScenarioError, match=r"wrk\.py:7: 'wrk' looks like the hook 'work'"):
        discovery.load_path(path)


def test_helpers_are_not_refused(tmp_path):
    path = write(tmp_path, """
        from os.path import join as verfy  # imported, not defined here

        def _verfiy(ctx):
            return []

        def verify_rows(ctx):
            return []

        def worker(ctx):  # beside the real work(): a helper
            return None

        def verify(ctx):
            return verify_rows(ctx) + _verfiy(ctx)
        """)
    loaded = discovery.load_path(path)
    assert loaded.verified and loaded.metrics == ()


@pytest.mark.parametrize("body, needle", [
    ("def verify():\n    return []\n",
     "verify() does not match the hook: the harness calls verify(ctx)"),
    ("def bound(ctx):\n    return 1.0\n", "the harness calls bound(ctx, mode)"),
    ("def awork(unit, ctx):\n    return None\n", "awork must be a coroutine function"),
    ("async def reset(ctx):\n    pass\n", "reset must be a plain function"),
])
def test_a_hook_with_the_wrong_signature_is_refused(tmp_path, body, needle):
    path = write(tmp_path, "\n\n" + body)
    with pytest.raises(ScenarioError) as err:
        discovery.load_path(path)
    assert needle in str(err.value)
    assert f"mine.py:{line_of(path, body.splitlines()[0])}:" in str(err.value)


def test_optional_and_variadic_parameters_fit(tmp_path):
    path = write(tmp_path, "\n\ndef bound(ctx, mode='serial', *rest):\n    return None\n"
                           "\n\ndef close_worker(ctx=None):\n    pass\n")
    discovery.load_path(path)


def test_a_scenario_without_verify_is_unverified(tmp_path):
    assert discovery.load_path(write(tmp_path, "")).verified is False
    assert discovery.load("calibrate").verified is True


def test_param_takes_an_explicit_type():
    with pytest.raises(ParamError, match="expected int"):
        Param("rate", 5).parse("2.5")  # the old behaviour: the default's type is too narrow
    rate = Param("rate", 5, type=float)
    assert rate.parse("2.5") == 2.5 and rate.default == 5.0 and rate.type is float
    assert Param("name", "x").type is str


def test_a_param_default_of_the_wrong_type_is_refused_at_load(tmp_path):
    path = write(tmp_path, '\nfrom harness.scenario import Param\n'
                           'PARAMS = (Param("rate", 2.5, type=int),)\n')
    with pytest.raises(ScenarioError) as err:
        discovery.load_path(path)
    assert f"mine.py:{line_of(path, 'PARAMS =')}: Param 'rate'" in str(err.value)
    assert "type=int" in str(err.value)


def test_a_param_default_outside_its_range_names_its_line(tmp_path):
    path = write(tmp_path, '\nfrom harness.scenario import Param\n'
                           'PARAMS = (Param("units", 0, minimum=1),)\n')
    with pytest.raises(ScenarioError, match=r"mine\.py:\d+: Param 'units': bad default"):
        discovery.load_path(path)


def test_declared_metrics_and_their_values(tmp_path):
    path = write(tmp_path, '\nfrom harness.scenario import Metric\n'
                           'METRICS = (Metric("duplicates", "invoices"),\n'
                           '           Metric("throughput", "rows/s", lower_is_better=False))\n')
    loaded = discovery.load_path(path)
    assert [m.name for m in loaded.metrics] == ["duplicates", "throughput"]
    checks = [Check("no duplicate invoices", 0, 3, False, metric="duplicates"),
              Check("rows", 10, 10, True),
              Check("no duplicate lines", 0, 2, False, metric="duplicates")]
    assert metric_values(checks, loaded.metrics) == {"duplicates": 5.0}
    # Recorded checks (cell.json) are dicts; a check with no metric key is an old record.
    recorded = [{"name": "rows", "expected": 1, "actual": 1, "ok": True},
                {"name": "speed", "expected": None, "actual": 12.5, "ok": True,
                 "metric": "throughput"}]
    assert metric_values(recorded, ["duplicates", "throughput"]) == {"throughput": 12.5}


def test_an_undeclared_metric_is_refused_naming_the_check():
    checks = [Check("orphans found", 0, 1, False, metric="orphans")]
    with pytest.raises(ScenarioError, match="check 'orphans found' reports metric 'orphans'"):
        metric_values(checks, [Metric("duplicates", "invoices")])
    with pytest.raises(ScenarioError, match="not a number"):
        metric_values([Check("x", 0, "many", False, metric="duplicates")], ["duplicates"])


def test_duplicate_metric_names_are_refused(tmp_path):
    path = write(tmp_path, '\nfrom harness.scenario import Metric\n'
                           'METRICS = (Metric("dups", "rows"), Metric("dups", "rows"))\n')
    with pytest.raises(ScenarioError, match="declares 'dups' twice"):
        discovery.load_path(path)


def test_edit_distance_counts_a_swap_as_one():
    assert edit_distance("verfiy", "verify") == 1
    assert edit_distance("wrk", "work") == 1
    assert edit_distance("verify_rows", "verify") == 5


def test_the_hook_table_is_the_one_source():
    table = hook_table()
    for copy in (harness.scenario.__doc__, (ROOT / "docs" / "extending.md").read_text()):
        found = re.search(r"<!-- hooks:begin -->\n(.*?)\n<!-- hooks:end -->", copy, re.S)
        assert found and found.group(1) == table, "regenerate: python -m harness.scenario"
    documented = re.findall(r"^\| `(?:async )?(\w+)", table, re.M)
    assert documented == [h.name for h in HOOKS]
    assert set(discovery.REQUIRED_FUNCTIONS) == {"units", "work"}
    assert set(discovery.OPTIONAL_FUNCTIONS) | set(discovery.REQUIRED_FUNCTIONS) == \
        {h.name for h in HOOKS if h.kind != "constant"}


def test_every_hook_the_harness_looks_up_is_in_the_table():
    """Each name the harness fetches with function("...")/has("...") is a declared hook."""
    used = set()
    for source in (ROOT / "harness").rglob("*.py"):
        used |= set(re.findall(r"""\b(?:function|has)\(["'](\w+)["']\)""", source.read_text()))
        used |= set(re.findall(r"\.module\.(\w+)\b", source.read_text()))
    assert used and used <= {h.name for h in HOOKS}, used - {h.name for h in HOOKS}


def test_list_and_run_exit_2_with_one_line(tmp_path):
    path = write(tmp_path, "\n\ndef verfiy(ctx):\n    return []\n")
    for args in (["list", str(path)], ["run", str(path), "--out", str(tmp_path / "r")]):
        done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert "'verfiy' looks like the hook 'verify'" in line and "mine.py:" in line


def test_the_docs_minimal_scenario_runs_and_reports_its_metric(tmp_path):
    from tests.runhelp import run_scenario

    doc = (ROOT / "docs" / "extending.md").read_text()
    section = doc[doc.index("### A complete minimal scenario"):]
    start = section.index("```python\n") + len("```python\n")
    source = section[start:section.index("\n```", start)]
    path = tmp_path / "checksums.py"
    path.write_text(source + "\n")
    loaded = discovery.load_path(path)
    assert loaded.verified and [m.name for m in loaded.metrics] == ["duplicates"]
    run = run_scenario(tmp_path / "out", str(path), ["serial", "threads"],
                       {"folder": ROOT / "examples" / "wordcount" / "data", "sleep_ms": 0.5})
    for cell in run.cells:
        assert cell["status"] == "ok" and cell["units_ok"] == 5, cell
        assert all(c["ok"] for c in cell["verify"]), cell["verify"]
        assert metric_values(cell["verify"], loaded.metrics) == {"duplicates": 0.0}


def test_counter_update_declares_lost_updates():
    loaded = discovery.load("counter_update")
    assert [(m.name, m.unit) for m in loaded.metrics] == [("lost_updates", "increments")]
    assert 'metric="lost_updates"' in loaded.path.read_text()


def test_a_refused_file_loads_once_fixed(tmp_path):
    path = write(tmp_path, "\n\ndef verfiy(ctx):\n    return []\n")
    with pytest.raises(ScenarioError):
        discovery.load_path(path)
    path.write_text(path.read_text().replace("verfiy", "verify"))
    assert discovery.load_path(path).verified
