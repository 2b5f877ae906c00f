"""``harness nightly SCENARIO``: run, compare with the last comparable runs, exit code.

The same options as ``harness run``, plus ``--threshold``, ``--history`` and ``--baseline``.
The baseline is the distribution of the last ``--history`` K finished runs of the scenario
under ``--out`` that ``compare`` accepts (no fingerprint mismatch:
:func:`harness.analysis.compare.comparable`), pooled: their cells together show how much
runs differ from night to night, which one run's repeats cannot. With none, this run
becomes the baseline of the next. An explicit ``--baseline`` that does not match is refused
(exit 2) unless ``--allow-mismatch``.
Exit codes for cron and CI: 0 fine, 1 a significant regression beyond ``--threshold``,
2 a usage error, 3 a correctness failure, 4 the harness itself failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands.exitcodes import EXIT_HARNESS, EXIT_INTERRUPTED, EXIT_USAGE

NAME = "nightly"
HELP = "run a scenario, compare it with the last comparable runs (pooled), exit 0/1/3/4"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.commands import run as run_command
    from harness.commands.compare import add_threshold_argument

    run_command.add_arguments(p)
    p.epilog = "example:\n  harness nightly csv_ingest --repeat 5 --threshold 5%\n"
    add_threshold_argument(p)
    p.add_argument("--baseline", type=Path, default=None, metavar="RUN_DIR", help="compare "
                   "with this run (default: the previous run with the same fingerprint)")
    p.add_argument("--history", type=int, default=5, metavar="K", help="compare with the "
                   "distribution of the last K finished comparable runs, pooled (default 5; "
                   "1 = the previous run only): one run's repeats do not show how much runs "
                   "differ from night to night")
    p.add_argument("--allow-mismatch", action="store_true", help="compare with a --baseline "
                   "whose fingerprint differs, saying what differs (default: refuse, exit 2)")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.analysis.compare import compare_runs, pool_runs
    from harness.analysis.history import previous_comparables
    from harness.commands.compare import print_comparison, print_mismatches
    from harness.commands.run import config_from, finish_run, run_exit_code
    from harness.records import load_run
    from harness.runner import Runner, RunInterrupted

    runner = Runner(config_from(args), console)  # bad options: usage errors (exit 2)
    try:
        run_dir = runner.run()
        analysis = finish_run(run_dir, args, console)
    except RunInterrupted as exc:
        console.print(f"[yellow]{exc}")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the harness itself failed: cron must hear about it
        console.print(f"[bold red]harness failure:[/] {type(exc).__name__}: {exc}",
                      highlight=False)
        console.print_exception()
        return EXIT_HARNESS
    console.print(f"results: {run_dir}")
    baselines = [args.baseline] if args.baseline else previous_comparables(
        args.out, runner.scenario.name, analysis.run, max(1, args.history))
    if not baselines:
        console.print("no earlier finished run with the same fingerprint: this run is the "
                      "baseline for the next one")
        return run_exit_code(analysis.table, analysis.verdict)
    if len(baselines) > 1:
        console.print(f"baseline: the last {len(baselines)} comparable runs, pooled")
    baseline = pool_runs([load_run(p, details=False) for p in baselines])
    comparison = compare_runs(baseline, analysis.run, args.threshold)
    if comparison.mismatches and not args.allow_mismatch:
        print_mismatches(comparison, console)
        console.print("--baseline is not comparable with this run")
        return EXIT_USAGE
    print_comparison(comparison, console)
    return comparison.exit_code
