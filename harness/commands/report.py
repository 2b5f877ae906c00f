"""``harness report RUN_DIR``: re-render a results folder from disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands.exitcodes import EXIT_OK

NAME = "report"
HELP = "re-render a results folder's comparison table from disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a results/<scenario>/<run-id>/ folder")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.report.tables import write_tables

    write_tables(args.run_dir, console)
    return EXIT_OK
