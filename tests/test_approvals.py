"""approvals against a real PostgreSQL: parallel requests with a check-then-act guard issue
duplicate invoices, sequential requests and the unique claim never do; every executor runs it."""

from __future__ import annotations

import pytest

from harness.analysis.frames import cells_frame
from harness.executors import all_executors
from harness.scenario import Context
from tests.runhelp import run_scenario

pytestmark = pytest.mark.db

SMALL = {"tickets": 10, "time_scale": 0.002}


def metrics(run):
    cells = cells_frame(run)
    return {mode: (dup, drop) for mode, dup, drop in
            zip(cells["mode"], cells["metric_duplicates"], cells["metric_dropped"])}


def test_the_model_escalates_on_absence_and_drops_at_the_deadline():
    from harness.discovery import load

    mod = load("approvals").module
    p = {"timeout_min": 15.0, "deadline_min": 25.0, "strategy": "sequential"}
    absent_first = (None, 4.0, 1.0)
    assert mod.sequential_plan(absent_first, p) == ([15.0, 4.0], 1)
    too_late = (None, 12.0, 1.0)  # 15 + 12 > 25: the deadline passes
    assert mod.sequential_plan(too_late, p) == ([15.0, 10.0], None)
    assert mod.expected_outcome(too_late, {**p, "strategy": "parallel"}) == 2
    units = mod.units(Context("approvals", {**dict((q.name, q.default) for q in mod.PARAMS)}))
    assert [u.payload for u in units] == [u.payload for u in mod.units(
        Context("approvals", {**dict((q.name, q.default) for q in mod.PARAMS)}))]


@pytest.mark.parametrize("executor", list(all_executors()))
def test_the_claim_issues_each_invoice_once_in_every_executor(postgres, tmp_path, executor):
    ok, why = all_executors()[executor].available()
    if not ok:
        pytest.skip(f"{executor} unavailable: {why}")
    run = run_scenario(tmp_path, "approvals", [executor],
                       {**SMALL, "strategy": "parallel_claim"}, workers={"*": 4})
    (cell,) = run.cells
    assert cell["status"] == "ok", cell["message"]
    assert cell["units_ok"] == SMALL["tickets"]
    assert all(c["ok"] for c in cell["verify"]), cell["verify"]
    assert metrics(run)[executor][0] == 0


def test_parallel_requests_duplicate_invoices_sequential_never(postgres, tmp_path):
    naive = run_scenario(tmp_path / "p", "approvals", ["serial", "threads"],
                         {**SMALL, "strategy": "parallel"}, workers={"threads": 4})
    for mode, (duplicates, _) in metrics(naive).items():
        assert duplicates > 0, mode  # the reviewers of one ticket answer concurrently
    failed = {c["name"] for cell in naive.cells for c in cell["verify"] if not c["ok"]}
    assert failed == {"no invoice issued twice"}
    for strategy in ("sequential", "hybrid"):
        run = run_scenario(tmp_path / strategy, "approvals", ["threads"],
                           {**SMALL, "strategy": strategy}, workers={"threads": 4})
        (cell,) = run.cells
        assert all(c["ok"] for c in cell["verify"]), (strategy, cell["verify"])
        assert metrics(run)["threads"][0] == 0
        assert cell["bound_s"] is not None and cell["status"] == "ok"
