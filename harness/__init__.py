"""workflow-harness: run one real workload under several execution modes and compare.

The public entry points are the ``harness`` command (:mod:`harness.cli`), the Python API
(``harness.run`` and ``harness.load``, :mod:`harness.api`), the scenario protocol
(:mod:`harness.scenario`) and the records format (:mod:`harness.records`).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "load", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: every cell process imports this package, and must not pay for pandas here;
    # by name, so a scenario's code hash (harness.sourcehash) does not take in the runner.
    if name in ("run", "load"):
        import importlib

        return getattr(importlib.import_module("harness.api"), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
