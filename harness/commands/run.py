"""``harness run SCENARIO``: every mode, every repeat, one results folder, one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands.exitcodes import EXIT_CORRECTNESS, EXIT_INTERRUPTED, EXIT_OK
from harness.commands.report import add_budget_arguments, parse_budgets

NAME = "run"
HELP = ("run a scenario in every mode and print the comparison table (exit 0; 3 when no "
        "mode passed its correctness checks)")
EPILOG = """\
examples:
  harness run calibrate
  harness run calibrate --modes serial,threads --workers 16 --param kind=cpu
  harness run csv_ingest --param scale=smoke --param source=local --repeat 1
  harness run ./my_scenario.py --timeout 60 --max-memory 2048
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("scenario", help="scenario name (see `harness list`) or path to a scenario .py file")
    p.add_argument("--modes", default="", help="comma-separated modes, each EXECUTOR[+POLICY]: "
                   "serial, threads, asyncio, processes, dask, under fifo (default), "
                   "interleave or capped(CAP,STAGGER), e.g. threads+interleave, "
                   "processes+capped(2,100ms); grouped = threads+capped (default: serial, "
                   "grouped, threads, asyncio, processes, dask, plus threads+interleave when "
                   "the units come in groups; see `harness list`)")
    p.add_argument("--workers", default=None, help="worker count: N for every mode, or "
                   "mode=N,... by mode or executor, e.g. threads=60,grouped=20 (defaults: serial 1, "
                   "processes and dask = cores, others 8; labels show it: threads[8])")
    p.add_argument("--repeat", type=int, default=3, help="counted cells per mode (default 3); "
                   "one extra warm-up cell runs first and is recorded but not counted")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up cell")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="scenario parameter, repeatable (see `harness list` for each scenario's)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per-cell time "
                   "limit in seconds; the cell's process group is killed and the cell recorded "
                   "as timeout with what it finished (default 600)")
    p.add_argument("--max-memory", type=float, default=None, metavar="MB", help="per-cell "
                   "memory budget: the whole process tree's summed PSS (shared pages counted once); "
                   "exceeded -> killed and recorded as memory-exceeded (default: none)")
    p.add_argument("--sample-hz", type=float, default=10.0, metavar="HZ", help="psutil "
                   "sampling rate of the cell's process tree and services (default 10; 0 = off)")
    p.add_argument("--on-error", choices=("continue", "stop"), default="continue",
                   help="continue: record failed units and go on; stop: halt at the first "
                   "failed unit and record the rest as not-run, as a sequential pipeline does")
    p.add_argument("--group-cap", type=int, default=3, help="capped policy (and grouped): "
                   "units of one group running at once, unless the spec says capped(N,..) "
                   "(default 3)")
    p.add_argument("--stagger", type=float, default=200.0, metavar="MS", help="capped policy "
                   "(and grouped): delay between group starts in milliseconds (default 200)")
    p.add_argument("--chunksize", type=int, default=None, help="processes and dask: units per "
                   "task (default: adaptive, ~50 ms of work per chunk)")
    p.add_argument("--dask-address", default=None, help="dask: scheduler address "
                   "(default: a LocalCluster)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results root (default "
                   "results/); each run gets a new results/<scenario>/<run-id>/ folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="skip report.md and report.html "
                   "(written into the results folder by default)")
    add_budget_arguments(p, recorded=False)


def config_from(args: argparse.Namespace):
    """The typed RunConfig for parsed ``run`` arguments (ConfigError on bad values)."""
    from dataclasses import asdict

    from harness.analysis.verdict import Budgets
    from harness.config import RunConfig, parse_params, parse_workers
    from harness.modes import split_modes

    budgets = Budgets(error_budget=args.error_budget, p99_budget_ms=args.p99_budget,
                      max_memory_mb=args.max_memory, min_gain=args.min_gain,
                      metrics=parse_budgets(args.budget))
    return RunConfig(
        scenario=args.scenario,
        modes=split_modes(args.modes),
        workers=parse_workers(args.workers), repeat=args.repeat, warmup=not args.no_warmup,
        params=parse_params(args.param), timeout_s=args.timeout,
        max_memory_mb=args.max_memory, sample_hz=args.sample_hz, on_error=args.on_error,
        group_cap=args.group_cap, stagger_s=args.stagger / 1000, chunksize=args.chunksize,
        dask_address=args.dask_address, out=args.out, progress=not args.no_progress,
        budgets=asdict(budgets))


def finish_run(run_dir: Path, args: argparse.Namespace, console: Console):
    """Table, verdict (budgets as recorded in run.json) and reports of a finished run."""
    from harness.api import load
    from harness.commands.report import print_events
    from harness.report.export import write_report
    from harness.report.tables import print_verdict, write_tables

    analysis = load(run_dir).analysis
    write_tables(run_dir, console, analysis)
    print_events(analysis.run.run, console)
    print_verdict(analysis.verdict, console)
    if not args.no_report:
        for fmt in ("md", "html"):
            console.print(f"report: {write_report(analysis, fmt)}")
    return analysis


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.api import run_config
    from harness.report.tables import write_tables
    from harness.runner import RunInterrupted

    try:
        run_dir = run_config(config_from(args), console)
    except RunInterrupted as exc:
        console.print(f"[yellow]{exc}")
        write_tables(exc.run_dir, console)
        return EXIT_INTERRUPTED
    analysis = finish_run(run_dir, args, console)
    console.print(f"results: {run_dir}")
    return run_exit_code(analysis.table, analysis.verdict)


def run_exit_code(table, verdict=None) -> int:
    """0 when at least one mode passed: it finished cleanly (its cells ended ``ok``) and
    its checks passed, or the scenario checks nothing ("unverified": the verdict warns);
    3 when no mode passed (every one failed verify, crashed, met a dead service or was
    otherwise discarded). A wrong mode beside a passing one is a finding, not a failure."""
    if table.empty:
        return EXIT_CORRECTNESS  # no cell finished at all: nothing passed
    if verdict is not None and verdict.outcome == "none":
        return EXIT_CORRECTNESS  # every mode was discarded
    flags = list(table["verify_ok"])
    if any(flag is True or flag == True for flag in flags):  # noqa: E712 (numpy bools)
        return EXIT_OK
    if all(flag is None or flag != flag for flag in flags):  # None or NaN: unverified
        return EXIT_OK
    return EXIT_CORRECTNESS
