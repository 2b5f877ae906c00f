"""``harness sweep SCENARIO``: how much parallel? A series of concurrency levels, searched
adaptively, each a normal cell with repeats; USL fit, N*, onset of errors, a recommendation."""

from __future__ import annotations

import argparse

from rich.console import Console

from harness.commands.exitcodes import EXIT_INTERRUPTED, EXIT_OK

NAME = "sweep"
HELP = "run one mode at a series of concurrency levels and recommend one (USL fit, N*, errors)"
EPILOG = """\
examples:
  harness sweep csv_ingest --executor threads --vary workers=1..256 --param source=api
  harness sweep csv_ingest --policy capped --workers 60 --vary cap=1..8 --vary stagger=0,100,200ms
  harness sweep calibrate --vary workers=1,2,4,8,16 --param lock_fraction=0.2 --repeat 1

A range (LO..HI) is searched: doubling from LO, then bisecting near the knee (about 10
points for 1..256, --max-points caps it); a list is run as given. Every point is recorded
in one results folder with sweep.json, sweep.md and sweep.png.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.commands.run import add_arguments as run_arguments

    run_arguments(p)  # the same cell options as `harness run` (--modes excepted)
    p.epilog = EPILOG
    p.add_argument("--executor", default="threads", help="where units run (default threads)")
    p.add_argument("--policy", default="fifo", help="dispatch policy whose arguments "
                   "--vary may name (capped: cap, stagger; fanout: group_workers, handlers)")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=LO..HI|A,B,C",
                   help="a knob to vary, repeatable: workers (the executor's) or a policy "
                   "argument; at most one range, lists make one series per combination")
    p.add_argument("--max-points", type=int, default=10, help="points per series a range "
                   "search may run (default 10)")


def config_from(args: argparse.Namespace):
    """The typed SweepConfig for parsed arguments (SweepError / ConfigError on bad values)."""
    from harness.analysis.sweep import Knob, SweepError
    from harness.commands.run import config_from as run_config_from
    from harness.sweeprun import SweepConfig

    if args.modes:
        raise SweepError("sweep builds its own modes: give --executor, --policy and --vary, not --modes")
    if not args.vary:
        raise SweepError("sweep needs at least one --vary, e.g. --vary workers=1..256")
    return SweepConfig(run=run_config_from(args), executor=args.executor, policy=args.policy,
                       knobs=tuple(Knob.parse(v) for v in args.vary), budget=args.max_points)


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.report.sweep import fit_text, write_sweep_report
    from harness.runner import RunInterrupted
    from harness.sweeprun import load_sweep, run_sweep

    sweep = config_from(args)
    try:
        run_dir = run_sweep(sweep, console)
    except RunInterrupted as exc:
        console.print(f"[yellow]{exc}")
        return EXIT_INTERRUPTED
    layout, summaries = load_sweep(run_dir)
    for summary in summaries:
        name = ", ".join(f"{k}={v}" for k, v in summary.values.items())
        console.print(f"[bold]{layout['axis']}[/] {name}")
        for p in summary.points:
            console.print(f"  {p.n:>5}  {p.label:<32} {p.throughput:9.1f} units/s  "
                          f"p95 {p.p95_ms:8.0f} ms  errors {p.error_rate:6.1%}"
                          f"{'' if p.clean else '  not clean'}", soft_wrap=True)
        for line in fit_text(summary, layout["axis"]):
            console.print(line.replace("**", ""), soft_wrap=True)
    for path in write_sweep_report(run_dir, layout, summaries):
        console.print(f"report: {path}")
    console.print(f"results: {run_dir}")
    return EXIT_OK
