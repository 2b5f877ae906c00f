"""The command line end to end, in subprocesses, as a user types it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HARNESS = [sys.executable, "-m", "harness"]


def harness(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=240,
                          env=env, **kwargs)


def test_run_end_to_end(tmp_path):
    done = harness("run", "calibrate", "--modes", "serial,threads", "--repeat", "1",
                   "--param", "units=8", "--param", "cost_ms=5", "--out", str(tmp_path),
                   "--no-progress")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "calibrate").iterdir()
    assert (run_dir / "table.md").read_text().count("\n") >= 4
    assert "threads" in (run_dir / "table.csv").read_text()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["config"]["repeat"] == 1
    assert "threads" in done.stdout and "speedup" in done.stdout
    again = harness("report", str(run_dir))
    assert again.returncode == 0 and "threads" in again.stdout


def test_bad_param_is_a_one_line_error_with_exit_code_2(tmp_path):
    for args, needle in ((["--param", "units=many"], "units"),
                         (["--param", "colour=red"], "colour"),
                         (["--param", "kind=gpu"], "kind"),
                         (["--param", "novalue"], "novalue"),
                         (["--modes", "serial,warp"], "warp")):
        done = harness("run", "calibrate", "--out", str(tmp_path), *args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], done.stderr


def test_unknown_scenario_names_the_available_ones(tmp_path):
    done = harness("run", "no_such_scenario", "--out", str(tmp_path))
    assert done.returncode == 2 and "calibrate" in done.stderr


def test_scenario_file_outside_the_repo(tmp_path):
    source = Path(__file__).resolve().parent.parent / "scenarios" / "calibrate.py"
    outside = tmp_path / "elsewhere" / "my_calibration.py"
    outside.parent.mkdir()
    outside.write_text(source.read_text().replace('NAME = "calibrate"', 'NAME = "mine"'))
    done = harness("run", str(outside), "--modes", "processes", "--repeat", "1",
                   "--no-warmup", "--param", "units=6", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "mine").is_dir()


def test_list_and_help():
    listed = subprocess.run([*HARNESS, "list"], capture_output=True, text=True, timeout=240,
                            env=dict(os.environ, COLUMNS="80"))
    assert listed.returncode == 0
    for word in ("calibrate", "serial", "threads", "processes", "asyncio", "grouped",
                 "fifo", "interleave", "capped"):
        assert word in listed.stdout
    # One line per scenario, executor and policy, readable in an 80-column terminal.
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    params = harness("list", "calibrate")
    assert params.returncode == 0 and "cost_ms" in params.stdout and "fail_every" in params.stdout
    helped = harness("run", "--help")
    for option in ("--workers", "--repeat", "--param", "--timeout", "--max-memory",
                   "--sample-hz", "--on-error", "--out"):
        assert option in helped.stdout


def test_ctrl_c_stops_cleanly_and_keeps_finished_cells(tmp_path):
    proc = subprocess.Popen([*HARNESS, "run", "calibrate", "--modes", "serial,threads",
                             "--repeat", "3", "--param", "units=20", "--param", "cost_ms=50",
                             "--out", str(tmp_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = None
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until at least one cell has finished
        found = list((tmp_path / "calibrate").glob("*/cells/*/cell.json"))
        if found:
            run_dir = found[0].parents[2]
            break
        time.sleep(0.1)
    assert run_dir is not None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted"
    cells = [json.loads(p.read_text()) for p in run_dir.glob("cells/*/cell.json")]
    assert any(c["status"] == "ok" for c in cells)
    assert len(cells) < len(run["plan"])


def test_killed_harness_leaves_no_cell_process(tmp_path):
    import psutil

    proc = subprocess.Popen([*HARNESS, "run", "calibrate", "--modes", "serial", "--repeat", "1",
                             "--no-warmup", "--param", "units=100", "--param", "cost_ms=100",
                             "--out", str(tmp_path), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    cells = []
    def command(p: psutil.Process) -> str:
        try:
            return " ".join(p.cmdline())
        except psutil.Error:  # a short-lived helper process that is already gone
            return ""

    while time.time() < deadline and not cells:
        cells = [c for c in psutil.Process(proc.pid).children(recursive=True)
                 if "harness.cell" in command(c)]
        time.sleep(0.1)
    assert cells
    proc.kill()  # kill -9: no chance to clean up; the cell must notice on its own
    proc.wait()
    gone, alive = psutil.wait_procs(cells, timeout=10)
    assert not alive


def test_exit_code_3_only_when_no_mode_is_correct(tmp_path):
    # A crash at unit 2 leaves units without receipts: verify fails in the only mode.
    done = harness("run", "calibrate", "--modes", "serial", "--repeat", "1", "--no-warmup",
                   "--param", "units=6", "--param", "crash_at=2", "--out", str(tmp_path),
                   "--no-progress", "--no-report")
    assert done.returncode == 3, done.stderr
    assert "FAIL" in done.stdout


def test_out_pointing_at_a_file_is_a_usage_error(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    done = harness("run", "calibrate", "--out", str(target), "--no-progress")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not a folder" in done.stderr
    assert "Traceback" not in done.stderr
