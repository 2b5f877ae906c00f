"""Check that every input got a correct count; print the checks as JSON for the harness.

    python examples/wordcount/verify.py [GLOB] [OUT_DIR]

GLOB defaults to ``$HARNESS_INPUTS`` and OUT_DIR to ``$HARNESS_WORK_DIR``: what the harness
sets for a ``verify_cmd``. Each input is counted again here and compared with the JSON file
``count_words.py`` left for it. Prints a JSON list of checks (``name``, ``expected``,
``actual``, ``ok``, ``detail``) and exits 0; exits 1 only when it cannot check at all.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from count_words import count, output_path  # noqa: E402 (the same rules as the writer)


def checks(pattern: str, out_dir: Path) -> list[dict]:
    inputs = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    missing, wrong = [], []
    for path in inputs:
        target = output_path(out_dir, path)
        if not target.exists():
            missing.append(path)
            continue
        got = json.loads(target.read_text(encoding="utf-8"))
        want = count(Path(path).read_text(encoding="utf-8"))
        if (got.get("words"), got.get("lines")) != (want["words"], want["lines"]):
            wrong.append(f"{path}: {got.get('words')} words, expected {want['words']}")
    written = len(list((out_dir / "counts").glob("*.json"))) if (out_dir / "counts").is_dir() else 0
    return [
        {"name": "every input has a count", "expected": len(inputs),
         "actual": len(inputs) - len(missing), "ok": not missing,
         "detail": "missing: " + ", ".join(missing[:5]) if missing else ""},
        {"name": "counts are right", "expected": 0, "actual": len(wrong), "ok": not wrong,
         "detail": "; ".join(wrong[:5])},
        {"name": "no stray outputs", "expected": len(inputs), "actual": written,
         "ok": written == len(inputs), "detail": "one count file per input"},
    ]


def main(argv: list[str]) -> int:
    pattern = argv[0] if argv else os.environ.get("HARNESS_INPUTS", "")
    out_dir = Path(argv[1] if len(argv) > 1 else os.environ.get("HARNESS_WORK_DIR", "."))
    if not pattern:
        print("verify: no inputs glob (argument or $HARNESS_INPUTS)", file=sys.stderr)
        return 1
    print(json.dumps(checks(pattern, out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
