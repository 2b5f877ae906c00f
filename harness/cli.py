"""The ``harness`` command: parse arguments into typed config at the edge, then run.

Exit codes, everywhere: 0 fine, 1 a significant regression (compare/nightly), 2 a usage
error, 3 a correctness failure, 4 the harness itself failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from rich.console import Console

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_CORRECTNESS, EXIT_HARNESS = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130

RUN_EPILOG = """\
examples:
  harness run calibrate
  harness run calibrate --modes serial,threads --workers 16 --param kind=cpu
  harness run csv_ingest --param scale=smoke --param source=local --repeat 1
  harness run ./my_scenario.py --timeout 60 --max-memory 2048
"""


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario name (see `harness list`) or path to a scenario .py file")
    p.add_argument("--modes", default="", help="comma-separated modes to run (default: every "
                   "mode available here, see `harness list`)")
    p.add_argument("--workers", default=None, help="worker count: N for every mode, or "
                   "mode=N,... per mode (defaults: serial 1, processes = cores, others 8)")
    p.add_argument("--repeat", type=int, default=3, help="counted cells per mode (default 3); "
                   "one extra warm-up cell runs first and is recorded but not counted")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up cell")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="scenario parameter, repeatable (see `harness list` for each scenario's)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per-cell time "
                   "limit in seconds; the cell's process group is killed and the cell recorded "
                   "as timeout with what it finished (default 600)")
    p.add_argument("--max-memory", type=float, default=None, metavar="MB", help="per-cell "
                   "memory budget (RSS of the whole process tree); exceeded -> killed and "
                   "recorded as memory-exceeded (default: none)")
    p.add_argument("--sample-hz", type=float, default=10.0, metavar="HZ", help="psutil "
                   "sampling rate of the cell's process tree and services (default 10; 0 = off)")
    p.add_argument("--on-error", choices=("continue", "stop"), default="continue",
                   help="continue: record failed units and go on; stop: halt at the first "
                   "failed unit and record the rest as not-run, as a sequential pipeline does")
    p.add_argument("--group-cap", type=int, default=3, help="grouped mode: units of one group "
                   "running at once (default 3)")
    p.add_argument("--stagger", type=float, default=200.0, metavar="MS", help="grouped mode: "
                   "delay between group starts in milliseconds (default 200)")
    p.add_argument("--chunksize", type=int, default=None, help="processes mode: units per "
                   "task (default: adaptive, ~20 ms of work per chunk)")
    p.add_argument("--dask-address", default=None, help="dask mode: scheduler address "
                   "(default: a LocalCluster)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results root (default "
                   "results/); each run gets a new results/<scenario>/<run-id>/ folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Run one real workload (a scenario) under several execution modes "
                    "(serial, threads, processes, asyncio, grouped, ...), measure time, CPU, "
                    "memory, I/O, errors and correctness, and compare.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="scenarios with their parameters, and modes")
    run = sub.add_parser("run", help="run a scenario in every mode and print the comparison table",
                         epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(run)
    report = sub.add_parser("report", help="re-render a results folder's table from disk")
    report.add_argument("run_dir", type=Path, help="a results/<scenario>/<run-id>/ folder")
    return parser


def _config_from(args: argparse.Namespace):
    from harness.config import RunConfig, parse_params, parse_workers

    return RunConfig(
        scenario=args.scenario,
        modes=[m.strip() for m in args.modes.split(",") if m.strip()],
        workers=parse_workers(args.workers), repeat=args.repeat, warmup=not args.no_warmup,
        params=parse_params(args.param), timeout_s=args.timeout,
        max_memory_mb=args.max_memory, sample_hz=args.sample_hz, on_error=args.on_error,
        group_cap=args.group_cap, stagger_s=args.stagger / 1000, chunksize=args.chunksize,
        dask_address=args.dask_address, out=args.out, progress=not args.no_progress)


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from harness.discovery import discover, load_path
    from harness.modes import all_modes

    console.print("[bold]scenarios[/]")
    for name, path in discover().items():
        try:
            scenario = load_path(path)
        except Exception as exc:  # one broken file must not hide the others
            console.print(f"  {name}: [red]cannot load: {exc}[/]")
            continue
        console.print(f"  [bold]{name}[/]  {scenario.description}")
        for p in scenario.params.values():
            extra = f" (one of {', '.join(map(str, p.choices))})" if p.choices else ""
            console.print(f"      --param {p.name}={p.default!r}  {p.help}{extra}")
    console.print("[bold]modes[/]")
    for name, cls in all_modes().items():
        ok, why = cls().available()
        note = "" if ok else f"  [yellow](unavailable: {why})[/]"
        console.print(f"  [bold]{name}[/]  {cls.description}{note}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from harness.report.tables import write_tables
    from harness.runner import Runner, RunInterrupted

    runner = Runner(_config_from(args), console)
    try:
        run_dir = runner.run()
    except RunInterrupted as exc:
        console.print(f"[yellow]{exc}")
        write_tables(exc.run_dir, console)
        return EXIT_INTERRUPTED
    table = write_tables(run_dir, console)
    console.print(f"results: {run_dir}")
    return EXIT_OK if table.empty or table["verify_ok"].all() else EXIT_CORRECTNESS


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from harness.report.tables import write_tables

    write_tables(args.run_dir, console)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "list": cmd_list, "run": cmd_run, "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``harness`` console script."""
    from harness.config import ConfigError
    from harness.records import SchemaError
    from harness.scenario import ScenarioError
    from harness.services.errors import ServiceError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    console = Console(stderr=False)
    try:
        return COMMANDS[args.command](args, console)
    except (ConfigError, ScenarioError, SchemaError) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"harness: service error: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
