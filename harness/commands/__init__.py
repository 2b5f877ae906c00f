"""One module per ``harness`` subcommand.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args, console) -> int``. Adding a subcommand is adding a module and naming it in
``COMMAND_MODULES``.
"""

COMMAND_MODULES = ("list", "run", "report", "compare", "history", "nightly", "serve", "nas", "sweep")
