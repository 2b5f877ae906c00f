"""Exit codes shared by every subcommand, for CI and cron."""

EXIT_OK = 0            # fine
EXIT_REGRESSION = 1    # a significant regression beyond --threshold (compare, nightly)
EXIT_USAGE = 2         # a usage error: bad option, unknown scenario, bad --param
EXIT_CORRECTNESS = 3   # a correctness failure (verify failed)
EXIT_HARNESS = 4       # the harness itself failed (a service would not start, a bug)
EXIT_INTERRUPTED = 130  # Ctrl-C
