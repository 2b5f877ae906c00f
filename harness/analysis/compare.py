"""Baseline vs candidate: per-mode changes with significance, and the exit code for CI.

Two runs are comparable only when their fingerprints (scenario code, parameters, machine;
:func:`harness.metadata.fingerprint`) match; a mismatch is reported, never silently
compared. Modes are matched by label. Per mode the candidate's makespans are compared with
the baseline's by :func:`harness.analysis.stats.compare_samples`:

* **regression**: significantly slower and more than ``threshold`` slower (or it stopped
  finishing: a censored candidate median), exit 1;
* **correctness**: verify failed in the candidate where it passed in the baseline, exit 3;
* the harness itself failed (the candidate run did not finish, a cell hit a harness
  error), exit 4. The worst applies: 4 > 3 > 1 > 0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.frames import counted
from harness.analysis.stats import Difference, Summary, compare_samples, makespan_sample, summarize
from harness.commands.exitcodes import EXIT_CORRECTNESS, EXIT_HARNESS, EXIT_OK, EXIT_REGRESSION
from harness.metadata import fingerprint
from harness.records import RunData

DEFAULT_THRESHOLD = 0.10


def fingerprint_id(run: dict[str, Any]) -> str:
    """A short, stable id of the run's fingerprint (equal ids: comparable runs)."""
    text = json.dumps(fingerprint(run), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def fingerprint_mismatches(baseline: dict[str, Any],
                           candidate: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fingerprint fields that differ, as (baseline, candidate); parameters one by one."""
    a, b = fingerprint(baseline), fingerprint(candidate)
    out: dict[str, tuple[Any, Any]] = {}
    for key in a.keys() | b.keys():
        if key == "params":
            pa, pb = a.get(key) or {}, b.get(key) or {}
            out.update({f"param {k}": (pa.get(k), pb.get(k)) for k in sorted(pa.keys() | pb.keys())
                        if pa.get(k) != pb.get(k)})
        elif a.get(key) != b.get(key):
            out[key] = (a.get(key), b.get(key))
    return dict(sorted(out.items()))


@dataclass
class ModeChange:
    """One mode in both runs."""

    mode: str
    # regression | improvement | unchanged | within threshold | correctness | new | missing
    status: str
    baseline: Summary | None = None
    candidate: Summary | None = None
    difference: Difference | None = None  # candidate vs baseline
    verify_baseline: bool | None = None
    verify_candidate: bool | None = None
    verify_failed: list[str] = field(default_factory=list)


@dataclass
class RunComparison:
    """The whole comparison and the exit code it implies."""

    baseline: Path
    candidate: Path
    threshold: float
    mismatches: dict[str, tuple[Any, Any]]
    changes: list[ModeChange]
    harness_problems: list[str]
    exit_code: int

    @property
    def comparable(self) -> bool:
        return not self.mismatches


def counted_cells(run: RunData) -> pd.DataFrame:
    cells = pd.DataFrame(run.cells)
    if cells.empty:
        return pd.DataFrame(columns=["label", "makespan_s", "status", "censored", "warmup"])
    return counted(cells)


def _verify(cells: pd.DataFrame) -> tuple[bool | None, list[str]]:
    checks = [c for checks in cells["verify"] for c in (checks or [])] if "verify" in cells \
        else []
    if not checks:
        return None, []
    failed = sorted({c["name"] for c in checks if not c["ok"]})
    return not failed, failed


def _harness_problems(run: RunData) -> list[str]:
    problems = []
    status = run.run.get("status")
    if status != "finished":
        problems.append(f"run {run.run.get('run_id')} did not finish: {status}")
    problems += [f"cell {c['cell_id']}: {c.get('message') or 'harness error'}"
                 for c in run.cells if c.get("status") == "harness-error"]
    return problems


def _mode_change(label: str, base: pd.DataFrame, cand: pd.DataFrame, threshold: float,
                 timeouts: tuple[Any, Any]) -> ModeChange:
    vb, _ = _verify(base)
    vc, failed = _verify(cand)
    sb, sc = makespan_sample(base, timeouts[0]), makespan_sample(cand, timeouts[1])
    diff = compare_samples(sc, sb)
    change = ModeChange(label, "unchanged", summarize(sb), summarize(sc), diff, vb, vc, failed)
    if vc is False and vb is not False:
        change.status = "correctness"
    elif diff.significant and (diff.ratio > 1 + threshold or diff.ratio_bound == ">="):
        change.status = "regression"
    elif diff.significant and diff.ratio < 1 - threshold:
        change.status = "improvement"
    elif diff.significant:
        change.status = "within threshold"
    return change


def compare_runs(baseline: RunData, candidate: RunData,
                 threshold: float = DEFAULT_THRESHOLD) -> RunComparison:
    """Compare every mode of ``candidate`` with ``baseline`` (see the module docstring)."""
    base, cand = counted_cells(baseline), counted_cells(candidate)
    timeouts = ((baseline.run.get("config") or {}).get("timeout_s"),
                (candidate.run.get("config") or {}).get("timeout_s"))
    changes = []
    for label in dict.fromkeys([*base["label"], *cand["label"]]):
        mine_b, mine_c = base[base["label"] == label], cand[cand["label"] == label]
        if mine_b.empty or mine_c.empty:
            changes.append(ModeChange(label, "new" if mine_b.empty else "missing"))
            continue
        changes.append(_mode_change(label, mine_b, mine_c, threshold, timeouts))
    problems = _harness_problems(candidate)
    statuses = {c.status for c in changes}
    if problems:
        code = EXIT_HARNESS
    elif "correctness" in statuses:
        code = EXIT_CORRECTNESS
    elif "regression" in statuses:
        code = EXIT_REGRESSION
    else:
        code = EXIT_OK
    return RunComparison(baseline.path, candidate.path, threshold,
                         fingerprint_mismatches(baseline.run, candidate.run), changes,
                         problems, code)
