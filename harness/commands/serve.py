"""``harness serve suppliers``: start the supplier endpoints by hand (foreground)."""

from __future__ import annotations

import argparse

from rich.console import Console

NAME = "serve"
HELP = "start a service by hand: `harness serve suppliers --data-dir DIR` (see --help)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", choices=("suppliers",), help="the service to run")
    parser.add_argument("service_args", nargs=argparse.REMAINDER,
                        help="options of the service (`harness serve suppliers --help`)")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.services import suppliers

    return suppliers.main(args.service_args)
