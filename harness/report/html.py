"""The HTML report (``report.html``): one self-contained file, plots embedded as PNG.

The same content as the Markdown report (:func:`harness.report.export.report_data`), plus
the plots of :mod:`harness.report.plots`. No external CSS, scripts or fonts: it opens from
an e-mail attachment or an artifact store as it is.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable

from harness.analysis.verdict import Analysis, headline
from harness.report.markdown_report import (CELL_COLUMNS, STATUS_WORDS, VERIFY_COLUMNS,
                                            cell_rows, environment_facts, run_facts,
                                            verify_rows)

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto;
       max-width: 1300px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.recommended td { background: #e8f6e8; font-weight: 600; }
tr.discarded td { color: #888; }
tr.inconclusive td { background: #fff6e0; }
.verdict { font-size: 1.2em; padding: .6em 1em; background: #eef5ff; border-left: 4px solid
           #3a78d8; } .warning { background: #fff4e0; border-left: 4px solid #e89b1a;
           padding: .4em .8em; margin: .4em 0; } .fail { color: #b00020; font-weight: 600; }
figure { margin: 1.2em 0; } figcaption { font-size: .85em; color: #555; }
img.plot { max-width: 100%; border: 1px solid #eee; } ul.notes { font-size: .85em; }
div.scroll { overflow-x: auto; }
"""


def _is_number(text: str) -> bool:
    return text.lstrip("~>=").replace(".", "", 1).replace("x", "").replace("-", "", 2) \
        .replace("%", "").isdigit()


def html_table(columns: Iterable[Any], rows: Iterable[Iterable[Any]],
               row_classes: Iterable[str] | None = None, table_id: str = "") -> str:
    """An escaped HTML table; numeric-looking cells right-aligned."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = []
    classes = list(row_classes) if row_classes is not None else []
    for i, row in enumerate(rows):
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            kind = "num" if _is_number(text) else ("fail" if "FAIL" in text else "")
            cells.append(f"<td class=\"{kind}\">{escape(text)}</td>" if kind
                         else f"<td>{escape(text)}</td>")
        css = f" class=\"{classes[i]}\"" if i < len(classes) and classes[i] else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    ident = f" id=\"{table_id}\"" if table_id else ""
    return (f"<div class=\"scroll\"><table{ident}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _facts(pairs: list[tuple[str, str]]) -> str:
    items = "".join(f"<li><b>{escape(k)}:</b> {escape(v)}</li>" for k, v in pairs)
    return f"<ul>{items}</ul>"


def _plots_html(analysis: Analysis) -> str:
    from harness.report.plots import all_plots

    try:
        plots = all_plots(analysis)
    except ImportError as exc:  # matplotlib missing: the report still says everything else
        return f"<p class=\"warning\">{escape(str(exc))}</p>"
    return "".join(
        f"<figure><h3>{escape(p.title)}</h3><img class=\"plot\" alt=\"{escape(p.title)}\" "
        f"src=\"{p.data_uri}\"><figcaption>{escape(p.caption)}</figcaption></figure>"
        for p in plots)


def render_html(data: dict[str, Any], analysis: Analysis) -> str:
    """The whole report as one HTML document."""
    verdict = data["verdict"]
    name = escape(str(data["scenario"].get("name")))
    title, detail = headline(verdict)
    shown = f"<b>{escape(title)}</b>" + (f": {escape(detail)}" if detail else "")
    statuses = verdict["status"]
    parts = [f"<h1>{name}: which execution mode?</h1>", "<h2>Verdict</h2>",
             f"<p class=\"verdict\" id=\"verdict\">{shown}</p>",
             html_table(("mode", "verdict", "reasons"),
                        ([m, STATUS_WORDS.get(statuses.get(m, ""), "").strip("*"),
                          "; ".join(r)] for m, r in verdict["reasons"].items()),
                        [statuses.get(m, "") for m in verdict["reasons"]])]
    parts += [f"<p class=\"warning\"><b>Warning:</b> {escape(w)}</p>" for w in verdict["warnings"]]
    parts += ["<h2>What was run</h2>", _facts(run_facts(data)), "<h2>Comparison table</h2>"]
    decisive = data["display"]["decisive"]
    if decisive:
        modes = [row[0] for row in decisive["data"]]
        parts.append(html_table(decisive["columns"], decisive["data"],
                                [statuses.get(m, "") for m in modes], "comparison"))
    parts.append("<ul class=\"notes\">" + "".join(f"<li>{escape(n)}</li>"
                                                    for n in data["table_notes"]) + "</ul>")
    if data["display"]["more"]:
        more = data["display"]["more"]
        parts += ["<h3>More measurements</h3>", html_table(more["columns"], more["data"])]
    parts += ["<h2>Plots</h2>", _plots_html(analysis), "<h2>Verify results</h2>"]
    rows = verify_rows(data)
    parts.append(html_table(VERIFY_COLUMNS, rows) if rows
                 else "<p>The scenario has no verify checks.</p>")
    parts += ["<h2>Cells</h2>", html_table(CELL_COLUMNS, cell_rows(data)),
              "<h2>Environment</h2>", _facts(environment_facts(data))]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{name}: workflow-harness report</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
