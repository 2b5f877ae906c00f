"""The ``recover(ctx)`` hook: the runner calls it after verify with the cell's run phase in
``ctx.extra["run_s"]`` and appends its checks; a recover that raises is a failed check."""

from __future__ import annotations

import textwrap

from tests.runhelp import run_scenario

SCENARIO = """
from harness.scenario import Check, Metric, Unit

METRICS = (Metric("recovery_s", "s"),)


def units(ctx):
    return [Unit(id=f"u{i}") for i in range(3)]


def work(unit, ctx):
    return None


def verify(ctx):
    return [Check("state", 3, 3, True)]


def recover(ctx):
    if ctx.params.get("broken"):
        raise RuntimeError("cannot resume")
    return [Check("recovered after the run phase", None, ctx.extra["run_s"], True,
                  metric="recovery_s")]
"""


def test_recover_checks_follow_verify_and_a_failing_recover_is_a_failed_check(tmp_path):
    path = tmp_path / "resumable.py"
    path.write_text(textwrap.dedent(SCENARIO))
    run = run_scenario(tmp_path / "ok", str(path), ["serial"])
    (cell,) = run.cells
    assert [c["name"] for c in cell["verify"]] == ["state", "recovered after the run phase"]
    assert cell["verify"][1]["actual"] == cell["makespan_s"] > 0  # the run phase, passed in
    broken = tmp_path / "unresumable.py"
    broken.write_text(textwrap.dedent(SCENARIO).replace('ctx.params.get("broken")', "True"))
    run = run_scenario(tmp_path / "broken", str(broken), ["serial"])
    (cell,) = run.cells
    assert cell["verify"][-1] == {"name": "recover", "expected": "runs",
                                  "actual": "RuntimeError: cannot resume", "ok": False,
                                  "detail": "", "metric": None}
