"""The ``harness`` command: parse arguments into typed config at the edge, then run.

Each subcommand lives in ``harness.commands.<name>``. Exit codes everywhere: 0 fine,
1 a significant regression, 2 a usage error, 3 a correctness failure, 4 the harness
itself failed, 130 interrupted (see :mod:`harness.commands.exitcodes`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from rich.console import Console

from harness.commands import COMMAND_MODULES
from harness.commands.exitcodes import EXIT_HARNESS, EXIT_INTERRUPTED, EXIT_USAGE


def _commands() -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"harness.commands.{name}") for name in COMMAND_MODULES}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Settle serial vs parallel vs capped by real execution: run one real "
                    "workload (a scenario) under several execution modes (serial, threads, "
                    "processes, asyncio, grouped, ...), measure time, CPU, memory, I/O, "
                    "errors and correctness, and compare.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = _commands()
    for name, module in commands.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``harness`` console script; returns the exit code."""
    from harness.config import ConfigError
    from harness.records import SchemaError
    from harness.scenario import ScenarioError
    from harness.services.errors import ServiceError

    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    console = Console()
    try:
        return commands[args.command].run(args, console)
    except (ConfigError, ScenarioError, SchemaError) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"harness: service error: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
