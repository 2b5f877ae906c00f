"""workflow-harness: run one real workload under several execution modes and compare.

The public entry points are the ``harness`` command (:mod:`harness.cli`), the scenario
protocol (:mod:`harness.scenario`) and the records format (:mod:`harness.records`).
"""

__version__ = "0.1.0"
