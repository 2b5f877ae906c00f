"""``harness nas mount|unmount``: the NFS-like FUSE volume by hand."""

from __future__ import annotations

import argparse

from rich.console import Console

NAME = "nas"
HELP = "mount or unmount the NFS-like FUSE volume by hand (`harness nas mount --help`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("nas_args", nargs=argparse.REMAINDER,
                        help="mount BACKING MOUNTPOINT [--latency-ms 12 --slots 8 ...] | "
                             "unmount MOUNTPOINT")


def run(args: argparse.Namespace, console: Console) -> int:
    from harness.services import nas

    return nas.main(args.nas_args)
