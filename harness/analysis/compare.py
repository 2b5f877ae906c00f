"""Baseline vs candidate: per-mode changes with significance, and the exit code for CI.

Two runs are comparable only when their fingerprints (scenario code and the modules it
imports, parameters, mode options, harness commit, packages, services as they really were,
machine; :func:`harness.metadata.fingerprint`) match; a mismatch is reported field by field,
never silently compared. Modes are matched by label. Per mode the candidate's makespans are
compared with the baseline's by :func:`harness.analysis.stats.compare_samples`:

* **regression**: significantly slower and slower by more than the mode's *limit* (or it
  stopped finishing: a censored candidate median), exit 1. The limit is noise-aware: the
  larger of ``threshold`` and ``NOISE_K`` (2.5) times the relative spread (standard
  deviation / median) the mode showed in either run: a change within 2.5 standard
  deviations of the noise is not called a regression. Two runs of one configuration differ by more than their own
  repeats vary (the machine's state shifts between runs), so a fixed 10% flagged noise as
  regressions (measured: ``tests/perf/test_gate.py``); a mode as noisy as that needs a
  larger change to be called one;
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

import numpy as np
import pandas as pd

from harness.analysis.frames import counted
from harness.analysis.stats import (Difference, Sample, Summary, compare_samples,
                                    makespan_sample, summarize)
from harness.commands.exitcodes import EXIT_CORRECTNESS, EXIT_HARNESS, EXIT_OK, EXIT_REGRESSION
from harness.metadata import fingerprint
from harness.records import RunData

DEFAULT_THRESHOLD = 0.10
# The limit is at least NOISE_K x the larger relative spread of the two samples. Calibrated
# by tests/perf/test_gate.py on pairs of same-config calibrate runs (false alarms at most 5%)
# and on the same runs slowed 1.5x (detected at least 90%).
NOISE_K = 2.5


# How a fingerprint group's fields are named in a mismatch: "param cost_ms",
# "package psycopg", "mode threads workers", "nas kind" (services are named by themselves).
MISMATCH_PREFIXES = {"params": "param", "packages": "package", "modes": "mode", "services": ""}


def _fingerprint_of(run: RunData | dict[str, Any]) -> dict[str, Any]:
    if isinstance(run, RunData):
        return fingerprint(run.run, run.cells)
    return fingerprint(run)


def fingerprint_id(run: RunData | dict[str, Any]) -> str:
    """A short, stable id of the run's fingerprint (equal ids: comparable runs). Pass the
    loaded run (its cells hold the options of older runs and the cluster size)."""
    text = json.dumps(_fingerprint_of(run), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _differences(a: Any, b: Any, name: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        # A field only one side recorded (an older run folder, a mode run only once) is
        # not a difference: only what both recorded can be compared.
        for key in sorted(a.keys() & b.keys(), key=str):
            _differences(a[key], b[key], f"{name} {key}".strip(), out)
    elif a != b:
        out[name] = (a, b)


def fingerprint_mismatches(baseline: RunData | dict[str, Any],
                           candidate: RunData | dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fingerprint fields that differ, as (baseline, candidate), one entry per leaf field:
    nested groups are diffed key by key (``param cost_ms``, ``package psycopg``,
    ``mode threads workers``, ``postgres version``, ``nas kind``). Fields recorded on one
    side only are not compared (see :func:`_differences`)."""
    a, b = _fingerprint_of(baseline), _fingerprint_of(candidate)
    out: dict[str, tuple[Any, Any]] = {}
    for key in a.keys() & b.keys():
        _differences(a[key], b[key], MISMATCH_PREFIXES.get(key, key), out)
    return dict(sorted(out.items()))


def comparable(baseline: RunData | dict[str, Any], candidate: RunData | dict[str, Any]) -> bool:
    """The one rule compare, nightly and history's baseline choice share."""
    return not fingerprint_mismatches(baseline, candidate)


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
    limit: float = DEFAULT_THRESHOLD  # the noise-aware threshold this mode was judged by


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


def relative_spread(sample: Sample) -> float:
    """Standard deviation over median of the uncensored values (0 with fewer than two)."""
    finite = sample.finite
    if len(finite) < 2 or np.median(finite) <= 0:
        return 0.0
    return float(np.std(finite, ddof=1) / np.median(finite))


def noise_limit(a: Sample, b: Sample, threshold: float, k: float = NOISE_K) -> float:
    """The change a mode must exceed to be a regression: ``threshold``, or more where
    either run's repeats spread more (see the module docstring)."""
    return max(threshold, k * max(relative_spread(a), relative_spread(b)))


def _mode_change(label: str, base: pd.DataFrame, cand: pd.DataFrame, threshold: float,
                 timeouts: tuple[Any, Any]) -> ModeChange:
    vb, _ = _verify(base)
    vc, failed = _verify(cand)
    sb, sc = makespan_sample(base, timeouts[0]), makespan_sample(cand, timeouts[1])
    diff = compare_samples(sc, sb)
    limit = noise_limit(sb, sc, threshold)
    change = ModeChange(label, "unchanged", summarize(sb), summarize(sc), diff, vb, vc, failed,
                        limit)
    if vc is False and vb is not False:
        change.status = "correctness"
    elif diff.significant and (diff.ratio > 1 + limit or diff.ratio_bound == ">="):
        change.status = "regression"
    elif diff.significant and diff.ratio < 1 - limit:
        change.status = "improvement"
    elif diff.significant:
        change.status = "within threshold"
    return change


def pool_runs(runs: list[RunData]) -> RunData:
    """Several comparable runs as one baseline (nightly's last K runs): every counted cell
    of each, so the baseline's spread holds the run-to-run noise, not one run's repeats.
    The newest run stands for the group in fingerprint checks and in the output."""
    newest = runs[-1]
    cells = [{**cell, "cell_id": f"{run.path.name}/{cell['cell_id']}"}
             for run in runs for cell in run.cells]
    return RunData(newest.path, newest.run, cells, {}, {})


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
                         fingerprint_mismatches(baseline, candidate), changes,
                         problems, code)
