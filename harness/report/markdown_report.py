"""The Markdown report (``report.md``): the design-review attachment.

Sections: the verdict with its reasons and warnings, what was run (scenario, parameters,
modes, budgets) and on which machine, the comparison table, verify results, the cells, and
the environment. Renders :func:`harness.report.export.report_data`.
"""

from __future__ import annotations

from typing import Any, Iterable

from harness.report.markdown import table_markdown

STATUS_WORDS = {"recommended": "**recommended**",
                "inconclusive": "inconclusive (the data cannot decide)",
                "slower": "slower", "discarded": "discarded"}


def md_table(columns: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    """A Markdown table of text from columns and rows: pipes escaped, left-aligned."""
    import pandas as pd

    columns = list(columns)
    lines = table_markdown(pd.DataFrame([list(r) for r in rows], columns=columns)).split("\n")
    lines[1] = "|" + "|".join("---" for _ in columns) + "|"
    return "\n".join(lines)


def _fmt(value: Any, unit: str = "", none: str = "none") -> str:
    if value is None:
        return none
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"


def run_facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs describing what was run, on which machine, with which budgets."""
    scenario, config, machine = data["scenario"], data["config"], data["machine"]
    budgets = data["verdict"]["budgets"]
    params = ", ".join(f"{k}={v}" for k, v in (scenario.get("params") or {}).items())
    workers = config.get("workers") or {}
    memory = machine.get("memory_bytes")
    return [
        ("Scenario", f"{scenario.get('name')} (version {scenario.get('version')}): "
                     f"{scenario.get('description', '')}"),
        ("Parameters", params or "defaults"),
        ("Modes", ", ".join(data["modes"]) or "none"),
        ("Repeats", f"{config.get('repeat')} counted per mode"
                    + (" + 1 warm-up cell (recorded, not counted)" if config.get("warmup")
                       else "")),
        ("Workers", ", ".join(f"{k}={v}" for k, v in workers.items()) or "mode defaults"),
        ("Limits", f"timeout {_fmt(config.get('timeout_s'), ' s')} per cell, memory "
                   f"{_fmt(config.get('max_memory_mb'), ' MB')}, on error: "
                   f"{config.get('on_error')}"),
        ("Budgets", f"error budget {budgets['error_budget']:.1%} of units, p99 budget "
                    f"{_fmt(budgets['p99_budget_ms'], ' ms')}, minimum gain over serial "
                    f"{budgets['min_gain']:.0%}"),
        ("Machine", f"{machine.get('cpu_model')}, {machine.get('cores_logical')} logical cores "
                    f"(affinity {machine.get('cpu_affinity')}), "
                    + (f"{memory / 2**30:.1f} GiB RAM, " if memory else "")
                    + f"{machine.get('os')}, Python {machine.get('python')}"),
        ("Run", f"{data['run'].get('run_id')}: {data['run'].get('status')}, "
                f"{data['run'].get('started_at')} to {data['run'].get('finished_at')}"),
    ]


def environment_facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    env = data["environment"]
    git = env.get("git") or {}
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    services = ", ".join(f"{k}: {v}" for k, v in (env.get("services") or {}).items())
    load = env.get("load_average")
    return [
        ("Code", f"commit {git.get('commit', 'unknown')}"
                 + (" (uncommitted changes)" if git.get("dirty") else "")),
        ("Packages", packages or "unknown"),
        ("Services", services or "none"),
        ("Load average at start", ", ".join(f"{x:.2f}" for x in load) if load else "unknown"),
        ("Results", f"{data['report_of']} (schema version {data['schema_version']}"
                    + (f", upgraded from {data['stored_schema_version']})"
                       if data.get("stored_schema_version") else ")")),
    ]


def verify_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for v in data["verify"]:
        result = (f"ok in {v['cells']} cells" if v["ok"] else
                  f"FAILED in {len(v['failed_cells'])} of {v['cells']} cells")
        rows.append([v["mode"], v["check"], result, v["expected"], v["actual"], v["detail"]])
    return rows


def cell_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for c in data["cells"]:
        makespan = "-" if c["makespan_s"] is None else \
            (">=" if c["censored"] else "") + f"{c['makespan_s']:.3f}"
        rows.append([c["cell_id"], c["label"], "warm-up" if c["warmup"] else "counted",
                     c["status"], makespan, c.get("message") or ""])
    return rows


VERIFY_COLUMNS = ("mode", "check", "result", "expected", "actual", "detail")
CELL_COLUMNS = ("cell", "mode", "counted", "status", "makespan s", "message")


def _split_table(split: dict[str, Any] | None) -> str:
    return md_table(split["columns"], split["data"]) if split else "(no cells)\n"


def render_markdown(data: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    from harness.analysis.verdict import headline

    verdict = data["verdict"]
    name = data["scenario"].get("name")
    out = [f"# {name}: which execution mode?", ""]
    out += ["## Verdict", ""]
    title, detail = headline(verdict)
    out += [f"**{title}**: {detail}" if detail else f"**{title}.**", ""]
    out.append(md_table(("mode", "verdict", "reasons"), (
        [mode, STATUS_WORDS.get(verdict["status"].get(mode, ""), ""), "; ".join(reasons)]
        for mode, reasons in verdict["reasons"].items())))
    for warning in verdict["warnings"]:
        out += [f"> **Warning:** {warning}", ""]
    out += ["", "## What was run", ""]
    out += [f"- **{label}:** {text}" for label, text in run_facts(data)]
    out += ["", "## Comparison table", "", _split_table(data["display"]["decisive"])]
    out += [f"- {note}" for note in data["table_notes"]]
    if data["display"]["more"]:
        out += ["", "### More measurements", "", _split_table(data["display"]["more"])]
    out += ["", "## Verify results", ""]
    rows = verify_rows(data)
    out.append(md_table(VERIFY_COLUMNS, rows) if rows else "The scenario has no verify "
               "checks.\n")
    out += ["", "## Cells", "", md_table(CELL_COLUMNS, cell_rows(data))]
    if data.get("events"):
        out += ["", "## Service events", "", md_table(("before cell", "service", "event",
                                                       "detail"), (
            [e.get("before_cell"), e.get("service"), e.get("event"), e.get("detail", "")]
            for e in data["events"]))]
    out += ["", "## Environment", ""]
    out += [f"- **{label}:** {text}" for label, text in environment_facts(data)]
    return "\n".join(out).rstrip() + "\n"
