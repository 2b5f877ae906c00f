"""A whole run: load the scenario, start services, prepare, run every planned cell, record.

The parent observes, the child works: each cell is a fresh child process
(:mod:`harness.cellrun`), so one mode's imports and memory never leak into the next
mode's numbers, and a crash, OOM or hang is recorded as that cell's outcome while the run
goes on. ``reset`` and ``verify`` run here in the parent, outside the measured window.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import metadata
from harness.cellrun import SERVICE_DOWN, CellLimits, CellProcess
from harness.config import ConfigError, RunConfig
from harness.health import ServiceWatch, check_services, down_services
from harness.discovery import LoadedScenario, load
from harness.modes import (INTERLEAVE_CONTROL, ModeError, ModeOptions, ModeSpec,
                           available_defaults)
from harness.plan import PlannedCell, make_plan
from harness.progress import CellProgress
from harness.records import (CellRecord, RunRecord, asdict_record, create_run_dir,
                             write_json_atomic)
from harness.runstate import (Registration, RunEntry, default_state_dir, drop_schemas,
                              process_started, reap_stale)
from harness.scenario import Check, Context, ScenarioError, Unit, metric_values
from harness.services.stack import ServiceStack
from harness.sourcehash import code_hash

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RunInterrupted(Exception):
    """Ctrl-C: the run stopped cleanly; ``run_dir`` holds every finished record."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted; partial results kept in {run_dir}")
        self.run_dir = run_dir


def state_dir() -> Path:
    """Where embedded services and generated data live (``.harness/`` of the project)."""
    return default_state_dir()


def resolve_modes(config: RunConfig) -> list[str]:
    """The mode specs to run: as asked (each checked), else the defaults available here."""
    if config.modes:
        for mode in config.modes:
            try:
                ModeSpec.parse(mode)
            except ModeError as exc:
                raise ScenarioError(str(exc)) from None
        return list(config.modes)
    return available_defaults()


def with_interleave_control(modes: list[str], units: list[Unit]) -> list[str]:
    """The default set plus ``threads+interleave`` right after a capped mode when the
    units have several groups: the capped hybrid both reorders and caps, and only a
    control that reorders alone tells a reader which of the two bought the gain."""
    capped = [m for m in modes if ModeSpec.parse(m).policy == "capped"]
    if not capped or INTERLEAVE_CONTROL in modes or len({u.group for u in units}) < 2:
        return modes
    at = modes.index(capped[0]) + 1
    return modes[:at] + [INTERLEAVE_CONTROL] + modes[at:]


HARNESS_ERROR = "harness-error"


def services_needed(scenario: LoadedScenario, params: dict[str, Any]) -> list[str]:
    declared = scenario.services
    fn = scenario.function("services")
    if fn is not None:
        declared = tuple(fn(params))
    return list(declared)


def side_samplers(stack: ServiceStack) -> list:
    """Observers that run beside the psutil sampler for each cell: PostgreSQL's own
    statistics (pg_stat_database, pg_stat_activity) on a connection of their own, and the
    Docker engine's stats of a service that runs in a container."""
    factories = []
    if "postgres" in stack.details:
        from harness.services.pg_stats import PgStatsSampler

        dsn = stack.details["postgres"]["dsn"]
        factories.append(lambda on_sample: PgStatsSampler(dsn, 2.0, on_sample))
    for name, container in stack.containers.items():
        from harness.services.container_stats import ContainerStatsSampler

        factories.append(lambda on_sample, c=container, n=name:
                         ContainerStatsSampler(c, on_sample, n))
    return factories


class Runner:
    """Runs one configured benchmark; ``run()`` returns the results folder."""

    def __init__(self, config: RunConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(stderr=True)
        self.scenario = load(config.scenario)
        self.params = self.scenario.resolve_params(config.params)
        self.modes = resolve_modes(config)
        declared = [m.name for m in self.scenario.metrics]
        for name in (config.budgets or {}).get("metrics") or {}:
            if name not in declared:  # before any cell runs: a typo must not cost a run
                raise ScenarioError(f"--budget {name}: {self.scenario.name} declares no such "
                                    f"metric (declared: {', '.join(declared) or 'none'})")
        self.plan = make_plan(self.modes, config.repeat, config.warmup)
        if Path(config.out).exists() and not Path(config.out).is_dir():
            raise ConfigError(f"--out {config.out}: a file, not a folder; pass the folder "
                              "results go under")
        self._down: str | None = None  # a service that could not be restarted

    def base_context(self, services: dict[str, dict[str, Any]], run_id: str) -> Context:
        """Shared data (generated fixtures, cached across runs) and per-run scratch space."""
        root = state_dir()
        return Context(scenario=self.scenario.name, params=dict(self.params),
                       services=services, run_id=run_id,
                       data_dir=root / "data" / self.scenario.name,
                       work_dir=root / "work" / self.scenario.name / run_id)

    def run(self) -> Path:
        cfg = self.config
        reap_stale(state_dir(), say=self.console.print)  # runs whose harness died: only those
        run_id, run_dir = create_run_dir(cfg.out, self.scenario.name)
        (run_dir / "cells").mkdir()
        code = code_hash(self.scenario.path)
        record = RunRecord(
            run_id=run_id,
            scenario={"name": self.scenario.name, "path": str(self.scenario.path),
                      "version": self.scenario.version,
                      "metrics": [dataclasses.asdict(m) for m in self.scenario.metrics], "code_hash": code.digest,
                      "code_files": code.files,
                      "description": self.scenario.description, "params": self.params},
            config=cfg.to_dict(), metadata=metadata.collect(PROJECT_ROOT),
            plan=[self._planned(c) for c in self.plan],
            budgets=dict(cfg.budgets),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        write_json_atomic(run_dir / "run.json", asdict_record(record))
        self.console.print(f"[bold]{self.scenario.name}[/]: {len(self.plan)} cells "
                           f"({', '.join(self.modes)}; {cfg.repeat} repeats + "
                           f"{int(cfg.warmup)} warm-up) -> {run_dir}")
        work = self.base_context({}, run_id)
        self._registration = Registration(state_dir(), RunEntry(
            run_id=run_id, owner_pid=os.getpid(), owner_started=process_started(os.getpid()),
            run_dir=str(run_dir), work_dir=str(work.work_dir),
            schema_prefix=dataclasses.replace(work, cell_id="").schema))
        self._registration.start_keeper()  # it cleans up if this process is killed
        try:
            with ServiceStack(state_dir(), say=self.console.print) as stack:
                self._run_cells(stack, record, run_dir)
            record.status = "finished" if record.status == "running" else record.status
        except KeyboardInterrupt:
            record.status = "interrupted"
            raise RunInterrupted(run_dir) from None
        except BaseException as exc:
            record.status = f"failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            # Per-run scratch space, removed only once every service is stopped and every
            # volume unmounted (the stack has exited): rmtree must never walk into a mount.
            shutil.rmtree(self.base_context({}, run_id).work_dir, ignore_errors=True)
            record.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_json_atomic(run_dir / "run.json", asdict_record(record))
            self._registration.close()
        return run_dir

    def _mode_options(self, name: str) -> tuple[ModeSpec, ModeOptions, str]:
        """A mode spec, the options it runs with here and its label."""
        spec = ModeSpec.parse(name)
        options = self.config.mode_options(name, spec.executor_class.default_workers)
        if spec.workers is not None:  # threads[64]: the spec's own count wins (sweep points)
            options = dataclasses.replace(options, workers=spec.workers)
        if not spec.executor_class.shows_workers:
            options = dataclasses.replace(options, workers=1)  # a loop has one worker
        return spec, options, spec.label(self.scenario, options)

    def _planned(self, cell: PlannedCell) -> dict[str, Any]:
        """A plan entry as run.json records it: with the label and every option the cell
        will run with, so the fingerprint holds them from the start (cells may never run)."""
        _, options, label = self._mode_options(cell.mode)
        return {"cell_id": cell.cell_id, **dataclasses.asdict(cell), "label": label,
                "options": dataclasses.asdict(options)}

    def _run_cells(self, stack: ServiceStack, record: RunRecord, run_dir: Path) -> None:
        mod = self.scenario
        needed = services_needed(mod, self.params)
        if "postgres" in needed:
            stack.start_postgres()
            pg = stack.details["postgres"]
            self._registration.update(dsn=pg["dsn"], pg_data_dir=str(
                stack.handles["postgres"].data_dir) if pg["embedded"] else "")
        ctx = self.base_context(stack.details, record.run_id)
        ctx.data_dir.mkdir(parents=True, exist_ok=True)
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        if mod.has("prepare"):
            self.console.print("preparing the scenario ...")
            mod.module.prepare(ctx)
        config_fn = mod.function("service_config")
        extra = config_fn(ctx) if config_fn is not None else {}
        for name in needed:
            if name != "postgres":
                stack.start(name, extra.get(name, {}))
        ctx.services = stack.details
        record.services = stack.versions
        if not self.config.modes:
            self._add_controls(ctx, record)
        write_json_atomic(run_dir / "run.json", asdict_record(record))
        try:
            self._run_plan(ctx, stack, record, run_dir)
        finally:
            try:
                if mod.has("teardown") and self._down is None:
                    mod.module.teardown(ctx)
            finally:
                if "postgres" in stack.details and not down_services(stack):
                    # Whatever a teardown missed: this run's cell schemas, and only them.
                    drop_schemas(stack.details["postgres"]["dsn"],
                                 self._registration.entry.schema_prefix)

    def _run_plan(self, ctx: Context, stack: ServiceStack, record: RunRecord,
                  run_dir: Path) -> None:
        """Every planned cell in order (a sweep overrides this to choose cells as it goes)."""
        with CellProgress(self.console, self.config.progress, len(self.plan)) as progress:
            for cell in self.plan:
                self._run_checked(cell, ctx, stack, record, run_dir, progress)

    def _run_checked(self, cell: PlannedCell, ctx: Context, stack: ServiceStack,
                     record: RunRecord, run_dir: Path, progress: CellProgress) -> None:
        """One cell, after the service check every cell gets (a sweep's too)."""
        self._check_services(cell, stack, record, run_dir)
        self._run_cell(cell, ctx, stack, run_dir, progress)

    def _check_services(self, cell: PlannedCell, stack: ServiceStack, record: RunRecord,
                        run_dir: Path) -> None:
        """Services checked before each cell (restart or service-down, recorded as events)."""
        if self._down is None:
            self._down = check_services(stack, record.events, cell.cell_id, self.console.print)
            if record.events:
                write_json_atomic(run_dir / "run.json", asdict_record(record))

    def _add_controls(self, ctx: Context, record: RunRecord) -> None:
        """Extend the default plan with the interleave control where groups matter."""
        modes = with_interleave_control(self.modes, list(self.scenario.module.units(ctx)))
        if modes != self.modes:
            # The control runs with the capped mode's workers: only the order may differ.
            capped = next(m for m in modes if ModeSpec.parse(m).policy == "capped")
            workers = self.config.workers
            if INTERLEAVE_CONTROL not in workers and capped in workers:
                workers[INTERLEAVE_CONTROL] = workers[capped]
            self.modes = modes
            self.plan = make_plan(modes, self.config.repeat, self.config.warmup)
            record.plan = [self._planned(c) for c in self.plan]
            self.console.print(f"added the control {INTERLEAVE_CONTROL} (the units have "
                               f"several groups): {len(self.plan)} cells")

    def _run_cell(self, cell: PlannedCell, base: Context, stack: ServiceStack,
                  run_dir: Path, progress: CellProgress) -> CellRecord:
        ctx, rec, child = self._prepare_cell(cell, base, stack, run_dir, progress)
        if self._down is not None:  # never wait on, or retry against, a dead server
            child.abandon(self._down, status=SERVICE_DOWN)
            self._close_cell(rec, child, ctx, verify=False)
            progress.end(SERVICE_DOWN, None)
            return rec
        if self.scenario.has("reset"):
            try:
                self.scenario.module.reset(ctx)
            except Exception as exc:  # this cell cannot run; the others still may
                child.abandon(f"reset failed: {type(exc).__name__}: {exc}")
                self._close_cell(rec, child, ctx, verify=False)
                progress.end("crashed", None)
                return rec
        try:
            outcome = child.run()
        except KeyboardInterrupt:
            self._close_cell(rec, child, ctx, verify=False)
            progress.end("interrupted", child.outcome.makespan_s)
            raise
        dead = down_services(stack) if outcome.status != SERVICE_DOWN else {}
        if dead:  # e.g. every unit failed in 0.1 s on a dead volume: not a result
            outcome.status, outcome.censored = SERVICE_DOWN, True
            outcome.message = "; ".join(f"{name} died during the cell: {why}"
                                        for name, why in dead.items())
        self._close_cell(rec, child, ctx, verify=outcome.status != SERVICE_DOWN)
        progress.end(outcome.status, outcome.makespan_s)
        return rec

    def _prepare_cell(self, cell: PlannedCell, base: Context, stack: ServiceStack,
                      run_dir: Path, progress: CellProgress
                      ) -> tuple[Context, CellRecord, CellProcess]:
        """The cell's context, its record (so far) and its child process, not yet run."""
        cfg = self.config
        spec, options, label = self._mode_options(cell.mode)
        executor = spec.executor_class
        cell_dir = run_dir / "cells" / cell.cell_id
        cell_dir.mkdir()
        policy = spec.build_policy(options.workers, options)
        ctx = dataclasses.replace(base, cell_id=cell.cell_id, mode=cell.mode,
                                  workers=options.workers,
                                  extra={"options": dataclasses.asdict(options),
                                         "executor": spec.executor, "policy": spec.policy,
                                         "policy_options": policy.info()})
        units = list(self.scenario.module.units(ctx))
        ctx.concurrency = executor.concurrency(options.workers, len(units))
        rec = CellRecord(cell_id=cell.cell_id, index=cell.index, mode=cell.mode, label=label,
                         repeat=cell.repeat, warmup=cell.warmup, workers=options.workers,
                         executor=spec.executor, policy=spec.policy,
                         simplicity=spec.simplicity,
                         options=dataclasses.asdict(options), units_total=len(units))
        progress.begin(cell.index, cell.cell_id, label, len(units))
        child_spec = {"scenario_path": str(self.scenario.path), "mode": cell.mode,
                "options": dataclasses.asdict(options),
                "ctx": {k: v for k, v in vars(ctx).items() if not k.startswith("_")}}
        limits = CellLimits(cfg.timeout_s,
                            cfg.max_memory_mb * 2**20 if cfg.max_memory_mb else None,
                            cfg.sample_hz)
        child = CellProcess(cell.cell_id, cell.mode, cell_dir, child_spec, units, limits, stack.pids,
                            on_progress=lambda done, errors, total: progress.update(done, errors),
                            side_samplers=side_samplers(stack),
                            scratch_dir=ctx.work_dir / ".cells" / cell.cell_id,
                            health=ServiceWatch(stack),
                            on_group=lambda pgid: self._registration.update(cell_pgid=pgid))
        return ctx, rec, child

    def _close_cell(self, rec: CellRecord, child: CellProcess, ctx: Context,
                    verify: bool) -> None:
        out = child.outcome
        rec.status, rec.exit_code, rec.message = out.status, out.exit_code, out.message
        rec.started_at_ns, rec.t0_perf_ns = out.t0_wall_ns, out.t0_ns
        rec.makespan_s, rec.censored = out.makespan_s, out.censored
        rec.setup_s, rec.teardown_s = out.setup_s, out.teardown_s
        rec.process_wall_s = out.process_wall_s
        rec.units_ok = out.counts.get("ok", 0)
        rec.units_error = out.counts.get("error", 0)
        rec.units_not_run = out.counts.get("not-run", 0)
        rec.sampler = out.sampler
        rec.info = out.info
        if verify:
            checks = self._verify(ctx)
            ctx.extra["run_s"] = rec.makespan_s
            checks += self._verify(ctx, "recover")  # a recovery run from the state verified
            rec.verify = [dataclasses.asdict(c) for c in checks]
            # The executor's real concurrency (a user's Dask cluster has its own size).
            ctx.workers = int((out.info or {}).get("workers", ctx.workers))
            rec.bound_s = self._bound(ctx)
            below_bound(rec)
        write_json_atomic(child.cell_dir / "cell.json", asdict_record(rec))

    def _verify(self, ctx: Context, hook: str = "verify") -> list[Check]:
        fn = self.scenario.function(hook)
        if fn is None:
            return []
        try:
            checks = list(fn(ctx))
            metric_values(checks, self.scenario.metrics)  # a wrong metric name says so here
            return checks
        except Exception as exc:  # a verify that cannot run is a failed check, not a crash
            return [Check(hook, "runs", f"{type(exc).__name__}: {exc}", False)]

    def _bound(self, ctx: Context) -> float | None:
        fn = self.scenario.function("bound")
        if fn is None:
            return None
        try:
            value = fn(ctx, ctx.extra.get("executor", ctx.mode))
        except Exception as exc:
            self.console.print(f"[yellow]bound() failed: {type(exc).__name__}: {exc}")
            return None
        return float(value) if value is not None else None


def below_bound(rec: CellRecord) -> None:
    """A run phase measured below the scenario's own lower bound is a harness error (a
    clock, a lost unit, a broken pool): flag the cell so it never enters a verdict."""
    # The bound assumes every unit ran: a cell that stopped early or had failed units
    # may well end sooner, and that is a finding, not a harness error.
    complete = rec.units_ok == rec.units_total
    if (rec.status == "ok" and complete and rec.bound_s is not None
            and rec.makespan_s is not None and rec.makespan_s < rec.bound_s):
        rec.status = HARNESS_ERROR
        rec.message = (f"measured run {rec.makespan_s:.4f} s below the scenario's bound "
                       f"{rec.bound_s:.4f} s: a harness error, not a result")
