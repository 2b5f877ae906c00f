"""retry_storm against a real PostgreSQL: retries amplify load, exponential backoff with
jitter needs fewer attempts than a fixed delay, and every unit is applied exactly once or
reported as failed."""

from __future__ import annotations

import pytest
from rich.console import Console

from harness.analysis.frames import units_frame
from harness.config import RunConfig
from harness.records import load_run
from harness.runner import Runner

pytestmark = pytest.mark.db


def run(tmp_path, modes, workers, **params):
    texts = {k: str(v) for k, v in params.items()}
    return load_run(Runner(RunConfig("retry_storm", modes, workers, 1, False, texts, out=tmp_path,
                                     progress=False), Console(quiet=True)).run())


def assert_accounted(data):
    """verify: every unit applied exactly once or given up, and the given-up ones are the
    units recorded as failed."""
    units = units_frame(data)
    for cell in data.cells:
        checks = {c["name"]: c for c in cell["verify"]}
        assert all(c["ok"] for c in checks.values()), checks
        failed = int((units[units["cell"] == cell["cell_id"]]["status"] == "error").sum())
        assert checks["units applied or reported failed"]["detail"].split(", ")[1] == \
            f"{failed} gave up"


def test_exponential_jitter_needs_fewer_attempts_than_fixed(postgres, tmp_path):
    attempts = {}
    for policy in ("fixed", "exponential_jitter"):
        data = run(tmp_path / policy, ["threads"], {"threads": 8}, units=120, retry=policy)
        units = units_frame(data)
        attempts[policy] = units["attempts"].mean()
        assert_accounted(data)
        retried = units["retries"].map(lambda r: r.get("55P03", 0)).sum()
        assert retried == (units["attempts"] - 1).sum() > 0  # busy row: LockNotAvailable
    assert attempts["exponential_jitter"] < 0.8 * attempts["fixed"], attempts


def test_no_retries_gives_up_at_the_first_failure(postgres, tmp_path):
    data = run(tmp_path, ["threads", "asyncio"], {"*": 8}, units=80, retry="none")
    units = units_frame(data)
    assert (units["attempts"] == 1).all()
    failed = units[units["status"] == "error"]
    assert len(failed) > 0 and set(failed["error_class"]) == {"LockNotAvailable[55P03]"}
    assert_accounted(data)


def test_faults_served_by_the_database_are_retried_within_the_budget(postgres, tmp_path):
    data = run(tmp_path, ["serial"], {}, units=60, hold_ms=0, fault_rate=0.3, retry="fixed",
               base_ms=0, budget=2)
    units = units_frame(data)
    faults = units["retries"].map(lambda r: r.get("53000", 0))
    assert faults.sum() > 0 and faults.max() <= 2
    failed = units[units["status"] == "error"]
    assert set(failed["error_class"]) <= {"InsufficientResources[53000]"}
    assert (failed["attempts"] == 3).all()
    assert_accounted(data)
