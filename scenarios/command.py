"""command: your pipeline's own script as the workload, run once per input file.

    harness run command --param cmd='python ingest.py {path}' \
        --param inputs='data/**/*.csv' --param group='{parent}'

Each file the ``inputs`` glob matches (sorted; relative to the current directory, or
absolute; ``**`` recurses) is one unit, and ``cmd`` runs once per unit: split with
:func:`shlex.split` and run without a shell (``--param shell=true`` runs it through
``/bin/sh -c``, with the placeholders shell-quoted). Placeholders, in ``cmd`` and in the
``group`` template: ``{path}`` (as matched), ``{name}`` (file name), ``{stem}`` (name without
suffix), ``{parent}`` (its folder, as matched) and, in ``cmd`` only, ``{group}``.

The exit status is the unit's status: a non-zero exit fails the unit with the exit code and
the tail of its stderr as the error. ``unit_timeout`` kills a command and every process it
started. Commands stay in the cell's process group, so a cell the harness kills (timeout,
memory budget, Ctrl-C) takes its commands with it.

Optional commands: ``setup_cmd`` once per run (in prepare), ``reset_cmd`` before every
cell, ``verify_cmd`` after every cell: it prints a JSON list of checks
``[{"name", "expected", "actual", "ok", "detail"?}]`` on stdout, or exits non-zero to fail
the cell's verification with its stderr tail. Without ``verify_cmd`` the runs are
unverified. Every command gets ``HARNESS_CELL``, ``HARNESS_MODE``, ``HARNESS_WORK_DIR`` (the
cell's own scratch folder, emptied before the cell: write per-cell output there),
``HARNESS_INPUTS`` (the glob) and, per unit, ``HARNESS_UNIT`` and ``HARNESS_GROUP``.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shlex
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

from harness.scenario import Check, Context, Param, ParamError, Unit

NAME = "command"
DESCRIPTION = "your own script as the workload: cmd runs once per input file (see docs)"
PARAMS = (
    Param("cmd", "", "command run once per input, e.g. 'python ingest.py {path}'; "
          "placeholders {path} {name} {stem} {parent} {group}"),
    Param("inputs", "", "glob of the input files, one unit each (sorted; ** recurses; "
          "relative to the current directory or absolute)"),
    Param("group", "{parent}", "a unit's group: a template over {path} {name} {stem} {parent}"),
    Param("shell", False, "run the commands through /bin/sh -c (placeholders shell-quoted)"),
    Param("unit_timeout", 0.0, "seconds one command may run before it and its children are "
          "killed (0 = no limit)", minimum=0.0),
    Param("setup_cmd", "", "run once per run, before the first cell"),
    Param("reset_cmd", "", "run before every cell"),
    Param("verify_cmd", "", "run after every cell: prints a JSON list of checks "
          "{name, expected, actual, ok}, or exits non-zero to fail"),
)
PLACEHOLDERS = ("path", "name", "stem", "parent", "group")
MESSAGE_CHARS = 500  # a unit record keeps the first 500 characters of an error message


class CommandFailed(Exception):
    """A command exited non-zero; the message is its exit code and stderr tail."""


class CommandTimeout(Exception):
    """A command ran past ``unit_timeout`` and was killed with its children."""


# ---- templates and units (the parent) ----

def _check_template(param: str, template: str, allowed: tuple[str, ...]) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:  # a lone "{" or "}"
        raise ParamError(f"--param {param}={template!r}: {exc} (write {{{{ and }}}} for "
                         "literal braces)") from None
    for field in fields:
        if field not in allowed:
            known = ", ".join(f"{{{name}}}" for name in allowed)
            raise ParamError(f"--param {param}={template!r}: unknown placeholder "
                             f"{{{field}}} (known: {known})")


def _matched(pattern: str) -> list[str]:
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
        raise ParamError(f"--param inputs={pattern!r}: no file matched (relative to "
                         f"{os.getcwd()})")
    return paths


def _render(template: str, values: dict[str, str], shell: bool) -> list[str]:
    """argv of one command: each shlex token filled in (a path with spaces stays one
    argument), or ``sh -c`` with shell-quoted values."""
    if shell:
        return ["/bin/sh", "-c", template.format(**{k: shlex.quote(v) for k, v in values.items()})]
    return [token.format(**values) for token in shlex.split(template)]


def _checked_params(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    for key, example in (("cmd", "python ingest.py {path}"), ("inputs", "data/**/*.csv")):
        if not p[key].strip():
            raise ParamError(f"--param {key} is empty: give it, e.g. --param {key}='{example}'")
    _check_template("cmd", p["cmd"], PLACEHOLDERS)
    _check_template("group", p["group"], PLACEHOLDERS[:-1])
    return p


def units(ctx: Context) -> list[Unit]:
    p = _checked_params(ctx)
    cwd = os.getcwd()  # workers (processes, Dask) run each command from here too
    result = []
    for path in _matched(p["inputs"]):
        as_path = Path(path)
        values = {"path": path, "name": as_path.name, "stem": as_path.stem,
                  "parent": str(as_path.parent)}
        values["group"] = p["group"].format(**values)
        result.append(Unit(id=path, group=values["group"],
                           payload={"argv": _render(p["cmd"], values, p["shell"]), "cwd": cwd}))
    return result


# ---- running commands (anywhere) ----

def cell_dir(ctx: Context) -> Path:
    """This cell's scratch folder (``HARNESS_WORK_DIR``)."""
    return (ctx.work_dir / "cells" / ctx.cell_id).resolve()


def _env(ctx: Context, unit: Unit | None = None) -> dict[str, str]:
    env = dict(os.environ, HARNESS_CELL=ctx.cell_id, HARNESS_MODE=ctx.mode,
               HARNESS_WORK_DIR=str(cell_dir(ctx)), HARNESS_INPUTS=ctx.params["inputs"])
    if unit is not None:
        env.update(HARNESS_UNIT=unit.id, HARNESS_GROUP=unit.group)
    return env


def _tail(stderr: bytes, room: int = MESSAGE_CHARS) -> str:
    """The end of stderr on one line, at most ``room`` characters (the end is where a
    traceback says what went wrong)."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    text = " | ".join(line.strip() for line in lines if line.strip())
    return text if len(text) <= room else "..." + text[-(room - 3):]


def _kill_tree(pid: int) -> None:
    """SIGKILL a command and every process under it (they share the cell's process group,
    so the group is not theirs alone to kill)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _outcome(what: str, returncode: int, stderr: bytes) -> None:
    if returncode != 0:
        head = f"{what} exited {returncode}"
        tail = _tail(stderr, MESSAGE_CHARS - len(head) - 2)
        raise CommandFailed(f"{head}: {tail}" if tail else head)


def run_command(argv: list[str], cwd: str | None, env: dict[str, str], timeout: float,
                what: str = "command", capture: bool = False) -> bytes:
    """Run one command; its stdout when ``capture`` (else it goes to the cell's log).
    Raises CommandFailed (non-zero exit) or CommandTimeout."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        _, err = proc.communicate()
        head = f"{what} killed after {timeout:g}s (unit_timeout)"
        raise CommandTimeout(f"{head}: {_tail(err, MESSAGE_CHARS - len(head) - 2)}") from None
    except BaseException:
        _kill_tree(proc.pid)  # the cell is being torn down: leave nothing behind
        raise
    _outcome(what, proc.returncode, err)
    return out or b""


def work(unit: Unit, ctx: Context) -> None:
    run_command(unit.payload["argv"], unit.payload["cwd"], _env(ctx, unit),
                ctx.params["unit_timeout"])


async def awork(unit: Unit, ctx: Context) -> None:
    """The same on the event loop: the process is awaited, no thread is held."""
    proc = await asyncio.create_subprocess_exec(
        *unit.payload["argv"], cwd=unit.payload["cwd"], env=_env(ctx, unit),
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timeout = ctx.params["unit_timeout"] or None
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        _kill_tree(proc.pid)
        await proc.wait()
        raise CommandTimeout(f"command killed after {timeout:g}s (unit_timeout)") from None
    except BaseException:
        _kill_tree(proc.pid)
        raise
    _outcome("command", proc.returncode or 0, err)


# ---- the run's own commands (the parent) ----

def _run_own(ctx: Context, param: str, capture: bool = False) -> bytes | None:
    """``setup_cmd``/``reset_cmd``/``verify_cmd``: no placeholders (they are no unit's), the
    environment says which cell; run from the current directory."""
    command = ctx.params[param]
    if not command.strip():
        return None
    argv = ["/bin/sh", "-c", command] if ctx.params["shell"] else shlex.split(command)
    return run_command(argv, None, _env(ctx), 0.0, param, capture)


def prepare(ctx: Context) -> None:
    _checked_params(ctx)
    _matched(ctx.params["inputs"])  # a glob that matches nothing fails here, before any cell
    cell_dir(ctx).mkdir(parents=True, exist_ok=True)
    try:
        _run_own(ctx, "setup_cmd")
    except (CommandFailed, CommandTimeout) as exc:
        raise ParamError(str(exc)) from None


def reset(ctx: Context) -> None:
    folder = cell_dir(ctx)
    shutil.rmtree(folder, ignore_errors=True)  # every cell writes into an empty folder
    folder.mkdir(parents=True)
    _run_own(ctx, "reset_cmd")


def _parse_checks(stdout: bytes) -> list[Check]:
    try:
        items = json.loads(stdout.decode(errors="replace") or "null")
        if not isinstance(items, list):
            raise ValueError(f"expected a JSON list, got {type(items).__name__}")
        return [Check(str(c["name"]), c["expected"], c["actual"], bool(c["ok"]),
                      str(c.get("detail", ""))) for c in items]
    except (ValueError, KeyError, TypeError) as exc:
        shown = stdout.decode(errors="replace").strip()[:200]
        return [Check("verify_cmd prints JSON checks", "[{name, expected, actual, ok}, ...]",
                      shown, False, f"{type(exc).__name__}: {exc}")]


def verify(ctx: Context) -> list[Check]:
    if not ctx.params["verify_cmd"].strip():
        return []  # nothing checked: the table shows the modes as unverified
    try:
        out = _run_own(ctx, "verify_cmd", capture=True) or b""
    except CommandFailed as exc:
        return [Check("verify_cmd", "exit 0", "non-zero exit", False, str(exc))]
    return _parse_checks(out)
