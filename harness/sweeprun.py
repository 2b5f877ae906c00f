"""Running a sweep: every point is a normal mode (``threads[64]``, ``threads+capped(2,100ms)``)
run as ordinary cells with repeats, each in a fresh process, all in one results folder.

The runner chooses points as it goes (:class:`harness.analysis.sweep.Search`): a point is
measured from its recorded cells before the next one is picked. ``sweep.json`` in the run
folder holds only the sweep's structure (knobs, series, which label is which point); every
number is recomputed from the raw records when the sweep is reported.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.analysis.sweep import (Knob, PointResult, Search, SeriesSummary, SweepError,
                                   series_of, summarize_series)
from harness.config import RunConfig
from harness.plan import PlannedCell
from harness.policies import get_policy
from harness.progress import CellProgress
from harness.records import RunRecord, asdict_record, load_run, write_json_atomic
from harness.runner import Runner
from harness.scenario import Context
from harness.services.stack import ServiceStack

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the base run configuration, the mode's executor and policy, what varies."""

    run: RunConfig
    executor: str
    policy: str = "fifo"
    knobs: tuple[Knob, ...] = ()
    budget: int = 10   # points per series at most


def axis_and_series(sweep: SweepConfig) -> tuple[Knob, list[dict[str, str]]]:
    """The knob along which throughput is plotted (the range, else the first integer list)
    and the value combinations of the others, one series each."""
    axis, _ = series_of(list(sweep.knobs))
    if axis is None:
        ints = [k for k in sweep.knobs if all(v.isdigit() for v in k.values)]
        if not ints:
            raise SweepError("--vary: one knob must be a concurrency (LO..HI or whole numbers)")
        axis = ints[0]
    _, combos = series_of([k for k in sweep.knobs if k.name != axis.name])
    return axis, combos


def point_mode(sweep: SweepConfig, values: dict[str, str]) -> str:
    """The mode spec of one point, e.g. ``threads[64]`` or ``threads[60]+capped(2,100ms)``."""
    params = get_policy(sweep.policy).params
    known = {"workers", *(name for name, _ in params)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SweepError(f"--vary {', '.join(unknown)}: {sweep.policy} varies "
                         f"{', '.join(sorted(known))}")
    mode = sweep.executor + (f"[{values['workers']}]" if "workers" in values else "")
    if sweep.policy != "fifo":
        args = [values.get(name, default) for name, default in params]
        mode += f"+{sweep.policy}" + (f"({','.join(args)})" if args else "")
    return mode


class _ListSearch(Search):
    """The listed values in order (a list knob as the axis: nothing to search)."""

    def __init__(self, values: list[int]):
        super().__init__(min(values), max(values), len(values))
        self._todo = list(values)

    def next(self) -> int | None:
        return self._todo.pop(0) if self._todo else None


def _search(axis: Knob, budget: int) -> Search:
    if axis.is_range:
        return Search(axis.lo, axis.hi, budget)
    return _ListSearch([int(v) for v in axis.values])


def analyze_dir(run_dir: Path, label: str | None = None) -> Any:
    """The run's analysis; with ``label``, of that point's cells alone (a sweep analyses each
    point as it ends: the earlier points' cells are not analysed again every time)."""
    from harness.analysis.verdict import analyze

    run = load_run(run_dir)
    if label is not None:
        cells = [c for c in run.cells if c.get("label") == label]
        ids = {c["cell_id"] for c in cells}
        run = dataclasses.replace(run, cells=cells,
                                  units={k: v for k, v in run.units.items() if k in ids},
                                  samples={k: v for k, v in run.samples.items() if k in ids})
    return analyze(run)


def point_result(analysis: Any, label: str, n: int, values: dict[str, str]) -> PointResult:
    """What the counted cells of ``label`` measured (recomputed from the raw records)."""
    cells = [c for c in analysis.run.cells if c.get("label") == label and not c.get("warmup")]
    rows = analysis.table[analysis.table["mode"] == label]
    row = rows.iloc[0].to_dict() if len(rows) else {}
    total = sum(c.get("units_total") or 0 for c in cells)
    bad = sum((c.get("units_error") or 0) + (c.get("units_not_run") or 0) for c in cells)
    missed = sum(max(0, (c.get("units_total") or 0) - (c.get("units_ok") or 0)
                     - (c.get("units_error") or 0) - (c.get("units_not_run") or 0)) for c in cells)
    # Clean: no unit failed or went missing (whatever --error-budget allows), and the
    # verdict keeps the point (every cell ok, verify passed, within the p99, memory and
    # metric budgets): a discarded point is never the best or the recommendation.
    clean = bool(cells) and bad + missed == 0 \
        and analysis.verdict.status.get(label) != "discarded"

    def number(key: str) -> float:
        value = row.get(key)
        return float(value) if value is not None and value == value else math.nan

    return PointResult(n=n, label=label, throughput=number("units_per_s") if row else 0.0,
                       makespan_s=number("wall_s"), p50_ms=number("p50_ms"),
                       p95_ms=number("p95_ms"), error_rate=(bad + missed) / total if total else 1.0,
                       clean=clean, memory_mb=number("memory_peak_mb"), values=dict(values))


class SweepRunner(Runner):
    """A :class:`Runner` whose plan grows point by point as the search decides."""

    def __init__(self, sweep: SweepConfig, console: Console | None = None):
        self.sweep = sweep
        self.axis, self.combos = axis_and_series(sweep)
        first = point_mode(sweep, {**self.combos[0], self.axis.name: str(self.axis.lo or self.axis.values[0])})
        super().__init__(dataclasses.replace(sweep.run, modes=[first]), console)
        self.layout: list[dict[str, Any]] = []

    def _run_plan(self, ctx: Context, stack: ServiceStack, record: RunRecord,
                  run_dir: Path) -> None:
        self.plan, record.plan = [], []  # the plan grows point by point, as it is run
        per_point = self.config.repeat
        estimate = len(self.combos) * self.sweep.budget * per_point + int(self.config.warmup)
        with CellProgress(self.console, self.config.progress, estimate) as progress:
            for values in self.combos:
                series: dict[str, Any] = {"values": values, "points": []}
                self.layout.append(series)
                search = _search(self.axis, self.sweep.budget)
                while (n := search.next()) is not None:
                    mode = point_mode(self.sweep, {**values, self.axis.name: str(n)})
                    label = self._mode_options(mode)[2]
                    cells = list(self._plan_point(mode))
                    record.plan += [self._planned(cell) for cell in cells]
                    write_json_atomic(run_dir / "run.json", asdict_record(record))
                    for cell in cells:
                        self._run_checked(cell, ctx, stack, record, run_dir, progress)
                    point = point_result(analyze_dir(run_dir, label), label, n, values)
                    search.observe(point)
                    series["points"].append({"n": n, "label": label, "mode": mode})
                    self._write_layout(run_dir)
                    progress.say(f"sweep {self.axis.name}={n} {values or ''}: "
                                 f"{point.throughput:.1f} units/s, errors {point.error_rate:.0%}"
                                 f"{'' if point.clean else ' (not clean)'}")

    def _plan_point(self, mode: str) -> list[PlannedCell]:
        cells = []
        if self.config.warmup and not self.plan:
            cells.append(PlannedCell(len(self.plan), mode, -1, True))
            self.plan.append(cells[-1])
        for r in range(self.config.repeat):
            cells.append(PlannedCell(len(self.plan), mode, r, False))
            self.plan.append(cells[-1])
        return cells

    def _write_layout(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / SWEEP_FILE, {
            "executor": self.sweep.executor, "policy": self.sweep.policy,
            "axis": self.axis.name, "budget": self.sweep.budget,
            "knobs": [dataclasses.asdict(k) for k in self.sweep.knobs], "series": self.layout})


def load_sweep(run_dir: Path) -> tuple[dict[str, Any], list[SeriesSummary]]:
    """A sweep folder's layout and, per series, its points and summary (from raw records)."""
    import json

    layout = json.loads((Path(run_dir) / SWEEP_FILE).read_text(encoding="utf-8"))
    analysis = analyze_dir(run_dir)
    summaries = [summarize_series([point_result(analysis, p["label"], p["n"], series["values"])
                                   for p in series["points"]], series["values"])
                 for series in layout["series"]]
    return layout, summaries


def run_sweep(sweep: SweepConfig, console: Console | None = None) -> Path:
    """Run a sweep; its results folder (a normal run folder plus sweep.json)."""
    return SweepRunner(sweep, console or Console(stderr=True, quiet=not sweep.run.progress)).run()
