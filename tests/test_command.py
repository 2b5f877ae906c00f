"""The command scenario: a user's own script as the workload, in every mode."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from harness.discovery import load
from harness.executors import all_executors
from harness.scenario import Context, ScenarioError
from tests.runhelp import run_scenario
from tests.test_modes import POLICY_SPECS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "wordcount"
INPUTS = str(EXAMPLE / "data" / "**" / "*")
PY = shlex.quote(sys.executable)
COUNT = f"{PY} {shlex.quote(str(EXAMPLE / 'count_words.py'))} {{path}}"
VERIFY = f"{PY} {shlex.quote(str(EXAMPLE / 'verify.py'))}"
N_INPUTS = 5


def params(**extra: str) -> dict[str, str]:
    return {"cmd": COUNT, "inputs": INPUTS, "group": "{parent}", "verify_cmd": VERIFY, **extra}


def only_cell(run):
    (cell,) = run.cells
    return cell


@pytest.mark.parametrize("executor", list(all_executors()))
def test_the_example_runs_in_every_executor_and_policy(tmp_path, executor):
    ok, why = all_executors()[executor].available()
    if not ok:
        pytest.skip(f"{executor} unavailable: {why}")
    modes = [executor + spec for spec in POLICY_SPECS.values()]
    run = run_scenario(tmp_path, "command", modes, params(), workers={"*": 2})
    assert len(run.cells) == len(modes)
    for cell in run.cells:
        assert cell["status"] == "ok", (cell["mode"], cell["message"])
        assert cell["units_ok"] == N_INPUTS, run.units[cell["cell_id"]]
        assert cell["verify"] and all(c["ok"] for c in cell["verify"]), cell["verify"]
        groups = {u["group"] for u in run.units[cell["cell_id"]]}
        assert groups == {str(EXAMPLE / "data" / "books"), str(EXAMPLE / "data" / "letters")}


def test_verify_cmd_fails_a_run_that_wrote_the_wrong_output(tmp_path):
    bad = tmp_path / "bad_count.py"
    bad.write_text(textwrap.dedent(f"""\
        import json, os, sys
        sys.path.insert(0, {str(EXAMPLE)!r})
        from pathlib import Path
        from count_words import output_path
        target = output_path(Path(os.environ["HARNESS_WORK_DIR"]), sys.argv[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({{"input": sys.argv[1], "words": 1, "lines": 1}}))
        """))
    run = run_scenario(tmp_path, "command", ["threads"],
                       params(cmd=f"{PY} {shlex.quote(str(bad))} {{path}}"))
    cell = only_cell(run)
    assert cell["status"] == "ok" and cell["units_ok"] == N_INPUTS
    failed = {c["name"]: c for c in cell["verify"] if not c["ok"]}
    assert list(failed) == ["counts are right"] and failed["counts are right"]["actual"] == 5


def test_verify_cmd_exiting_non_zero_fails_with_its_stderr(tmp_path):
    verify = f"{PY} -c \"import sys; sys.exit('verifier: table missing')\""
    run = run_scenario(tmp_path, "command", ["serial"], params(verify_cmd=verify))
    (check,) = only_cell(run)["verify"]
    assert not check["ok"] and "exited 1: verifier: table missing" in check["detail"]


def test_a_failing_command_fails_its_unit_with_exit_code_and_stderr_tail(tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text("import sys\nif 'orders' in sys.argv[1]:\n"
                      "    print('x' * 2000, file=sys.stderr)\n"
                      "    sys.exit('cannot parse ' + sys.argv[1])\n")
    run = run_scenario(tmp_path, "command", ["serial"],
                       params(cmd=f"{PY} {shlex.quote(str(script))} {{path}}", verify_cmd=""))
    cell = only_cell(run)
    assert cell["units_ok"] == N_INPUTS - 1 and cell["units_error"] == 1
    assert cell["verify"] == []  # no verify_cmd: unverified, not passed
    (failed,) = [u for u in run.units[cell["cell_id"]] if u["status"] == "error"]
    assert failed["error_class"] == "CommandFailed"
    assert failed["error"].startswith("command exited 1: ...xxx")
    assert failed["error"].endswith("cannot parse " + str(EXAMPLE / "data/letters/orders.csv"))


def test_unit_timeout_kills_the_command_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent(f"""\
        import os, subprocess, sys, time
        child = subprocess.Popen(["sleep", "60"])
        name = os.path.basename(sys.argv[1])
        open(os.path.join({str(pids)!r}, name), "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(60)
        """))
    inputs = str(EXAMPLE / "data" / "letters" / "*")
    run = run_scenario(tmp_path, "command", ["threads"],
                       params(cmd=f"{PY} {shlex.quote(str(script))} {{path}}", inputs=inputs,
                              verify_cmd="", unit_timeout="1"), workers={"*": 2})
    cell = only_cell(run)
    assert cell["units_error"] == 2 and cell["makespan_s"] < 30
    classes = {u["error_class"] for u in run.units[cell["cell_id"]]}
    assert classes == {"CommandTimeout"}
    for record in pids.iterdir():
        for pid in map(int, record.read_text().split()):
            assert not psutil.pid_exists(pid) or \
                psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid


def _ctx(**values: str) -> Context:
    scenario = load("command")
    return Context(scenario="command", params=scenario.resolve_params(values))


@pytest.mark.parametrize("values, needle", [
    ({"cmd": "python x.py {file}", "inputs": INPUTS},
     "unknown placeholder {file} (known: {path}, {name}, {stem}, {parent}, {group})"),
    ({"cmd": COUNT, "inputs": INPUTS, "group": "{group}"}, "unknown placeholder {group}"),
    ({"cmd": "", "inputs": INPUTS}, "--param cmd is empty"),
    ({"cmd": "   ", "inputs": INPUTS}, "--param cmd is empty"),
    ({"cmd": COUNT, "inputs": "nowhere/**/*.csv"},
     f"--param inputs='nowhere/**/*.csv': no file matched (relative to {os.getcwd()})"),
])
def test_clear_errors(values, needle):
    module = load("command").module
    with pytest.raises(ScenarioError) as err:
        module.units(_ctx(**values))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_placeholders_and_shell_quoting(tmp_path):
    module = load("command").module
    folder = tmp_path / "my data"
    folder.mkdir()
    (folder / "a b.csv").write_text("x\n")
    (unit,) = module.units(_ctx(cmd="wc -l {path} {name} {stem} {parent} {group}",
                                inputs=str(folder / "*.csv"), group="{stem}-g"))
    assert unit.payload["argv"] == ["wc", "-l", str(folder / "a b.csv"), "a b.csv", "a b",
                                    str(folder), "a b-g"]
    (unit,) = module.units(_ctx(cmd="wc -l {path}", inputs=str(folder / "*.csv"), shell="true"))
    assert unit.payload["argv"] == ["/bin/sh", "-c", f"wc -l '{folder / 'a b.csv'}'"]


def test_the_readme_command_runs_from_the_repo(tmp_path):
    readme = (ROOT / "README.md").read_text()
    (command,) = re.findall(r"^(harness run command .*)$", readme, re.M)
    argv = shlex.split(command)[1:]
    env = dict(os.environ, PATH=os.pathsep.join((str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", ""))), COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "harness", *argv, "--modes", "serial,processes",
                           "--no-warmup", "--no-report", "--no-progress", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "serial" in done.stdout and "ok" in done.stdout


def test_a_bad_placeholder_is_a_one_line_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "run", "command",
                           "--param", "cmd=cat {file}", "--param", f"inputs={INPUTS}",
                           "--out", str(tmp_path), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown placeholder {file}" in done.stderr.strip().splitlines()[-1]
