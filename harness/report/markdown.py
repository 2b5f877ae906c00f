"""The comparison table as Markdown (``table.md``)."""

from __future__ import annotations

import pandas as pd


def table_markdown(display: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; pipes inside cells are escaped."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in display.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(display.columns))) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in display.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
