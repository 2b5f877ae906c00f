"""The fault suite's table: fault | run outcome | records lost | left behind, and totals."""

from __future__ import annotations

from tests.faults.faultrun import ROWS


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not ROWS:
        return
    write = terminalreporter.write_line
    width = max(len(r["fault"]) for r in ROWS)
    out_width = max(len(r["outcome"]) for r in ROWS)
    write("")
    write(f"{'fault':<{width}} | {'run outcome':<{out_width}} | records lost | left behind")
    write(f"{'-' * width}-|-{'-' * out_width}-|--------------|------------")
    for r in ROWS:
        left = ", ".join(r["left"]) or "0"
        write(f"{r['fault']:<{width}} | {r['outcome']:<{out_width}} | {r['lost']:>12} | {left}")
    failed = [r for r in terminalreporter.stats.get("failed", [])
              if "tests/faults/" in r.nodeid]
    write(f"totals: {len(ROWS)} faults, {len(ROWS) - len(failed)} survived, "
          f"{sum(r['lost'] for r in ROWS)} records lost, "
          f"{sum(len(r['left']) for r in ROWS)} things left behind")
