"""docs/extending.md's executor and policy examples, dropped in as one file each into a
copy of the package, run end to end: adding one is one file and nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> dict[str, str]:
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return {"executor": next(b for b in blocks if "class OneThreadExecutor" in b),
            "policy": next(b for b in blocks if "class Shortest" in b)}


def test_a_new_executor_and_a_new_policy_are_one_file_each(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "harness", copy / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scenarios", copy / "scenarios")
    blocks = _blocks()
    (copy / "harness" / "executors" / "onethread.py").write_text(blocks["executor"])
    (copy / "harness" / "policies" / "shortest.py").write_text(blocks["policy"])
    env = dict(os.environ, PYTHONPATH=str(copy), HARNESS_STATE_DIR=str(tmp_path / "state"))
    listed = subprocess.run([sys.executable, "-m", "harness", "list"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    assert "onethread" in listed.stdout and "shortest" in listed.stdout, listed.stderr
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(copy / "scenarios" / "calibrate.py"),
         "--modes", "onethread+shortest", "--repeat", "1", "--no-warmup", "--no-report",
         "--param", "units=12", "--param", "cost_ms=5", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    [cell_json] = out.glob("calibrate/*/cells/*/cell.json")
    cell = json.loads(cell_json.read_text())
    assert cell["status"] == "ok" and cell["units_ok"] == 12, cell["message"]
    assert cell["label"] == "onethread[8]+shortest"
    assert all(check["ok"] for check in cell["verify"])
