"""The verdict's budgets: the limits a mode must keep to stay eligible, and the reasons a
mode that breaks one is discarded. Recorded in run.json, so a report re-rendered later
reaches the verdict ``harness run`` printed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.results import ModeResult
from harness.scenario import ScenarioError


@dataclass
class Budgets:
    """The verdict's limits; stored in run.json (since schema v2) so re-rendering agrees."""

    error_budget: float = 0.0           # fraction of units allowed to fail or not run
    p99_budget_ms: float | None = None  # p99 latency-from-due limit
    max_memory_mb: float | None = None  # the run's --max-memory, against peak memory (PSS)
    min_gain: float = 0.2               # the gain a more complex mode must show to win
    metrics: dict[str, float] = field(default_factory=dict)  # --budget NAME=LIMIT (declared)

    @classmethod
    def from_run(cls, run: dict[str, Any], **overrides: Any) -> "Budgets":
        """The run's recorded budgets, with ``overrides`` (not None) on top."""
        recorded = dict(run.get("budgets") or {})
        if recorded.get("max_memory_mb") is None:
            recorded["max_memory_mb"] = (run.get("config") or {}).get("max_memory_mb")
        known = {k: v for k, v in recorded.items() if k in cls.__dataclass_fields__}
        known.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**known)



def budget_reasons(r: ModeResult, budgets: Budgets) -> list[str]:
    out = []
    if r.verify_ok is False:
        out.append(f"failed verify: {r.verify_failed or 'see verify results'}")
    if r.units_total and r.failed_units / r.units_total > budgets.error_budget:
        out.append(f"{r.failed_units} of {r.units_total} units failed or did not run "
                   f"({r.failed_units / r.units_total:.1%}; error budget "
                   f"{budgets.error_budget:.1%})")
    if budgets.p99_budget_ms is not None and r.p99_ms > budgets.p99_budget_ms:
        out.append(f"p99 latency {r.p99_ms:.1f} ms over the p99 budget "
                   f"{budgets.p99_budget_ms:g} ms")
    if (budgets.max_memory_mb is not None and r.memory_peak_mb > budgets.max_memory_mb
            and not r.statuses.get("memory-exceeded")):
        out.append(f"peak memory (PSS) {r.memory_peak_mb:.0f} MB over the memory budget "
                   f"{budgets.max_memory_mb:g} MB")
    return out + _metric_reasons(r, budgets)


def _metric_reasons(r: ModeResult, budgets: Budgets) -> list[str]:
    """--budget NAME=LIMIT on a declared metric: over it (or under, where higher is
    better) discards; not measured cannot show it is within, and discards too."""
    out = []
    for name, limit in budgets.metrics.items():
        value, lower_is_better = r.metrics.get(name, (math.nan, True))
        if math.isnan(value):
            out.append(f"{name} not measured, so not shown within its budget {limit:g}")
        elif (value > limit) if lower_is_better else (value < limit):
            side = "over" if lower_is_better else "under"
            out.append(f"{name} {value:g} {side} its budget {limit:g}")
    return out


def check_metric_budgets(budgets: Budgets, metrics: list[dict[str, Any]]) -> None:
    """A --budget on a metric the scenario does not declare is a usage error naming both."""
    declared = [m["name"] for m in metrics]
    for name in budgets.metrics:
        if name not in declared:
            raise ScenarioError(f"--budget {name}: the scenario declares no such metric "
                                f"(declared: {', '.join(declared) or 'none'})")
