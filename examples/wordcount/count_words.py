"""Count the words and lines of one text or CSV file; write the result as JSON.

    python examples/wordcount/count_words.py INPUT [OUT_DIR]

OUT_DIR defaults to ``$HARNESS_WORK_DIR`` (the harness gives every cell its own), so a
benchmark cell never reads another cell's output. The result lands in
``OUT_DIR/counts/<input path with / as __>.json``: ``{"input", "words", "lines"}``.
Exits 1 (with a message on stderr) when the input cannot be read.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def output_path(out_dir: Path, input_path: str) -> Path:
    """Where the count of ``input_path`` goes (the verifier uses the same rule)."""
    return out_dir / "counts" / (input_path.strip("/").replace("/", "__") + ".json")


def count(text: str) -> dict[str, int]:
    # CSV cells count as words too: separators are whitespace and commas.
    return {"words": len(text.replace(",", " ").split()), "lines": len(text.splitlines())}


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out_dir = Path(argv[1] if len(argv) > 1 else os.environ.get("HARNESS_WORK_DIR", "."))
    try:
        text = Path(argv[0]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"count_words: cannot read {argv[0]}: {exc}", file=sys.stderr)
        return 1
    target = output_path(out_dir, argv[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps({"input": argv[0], **count(text)}), encoding="utf-8")
    partial.replace(target)  # a reader never sees half a file
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
