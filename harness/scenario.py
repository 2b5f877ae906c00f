"""The scenario protocol: what a workload file in ``scenarios/`` provides.

A scenario is one Python module. It declares its parameters and implements a handful of
module-level functions (module-level so the process pool and Dask can ship them), matched by
name. :data:`HOOKS` is the one list of them: this table, the loader's checks
(:mod:`harness.discovery`) and ``docs/extending.md`` are derived from it, and a test keeps
the copies below and in the docs equal to :func:`hook_table` (print it with
``python -m harness.scenario``).

<!-- hooks:begin -->
| hook | required | runs in | what |
|---|---|---|---|
| `NAME` | no | load | scenario name (defaults to the file name) |
| `DESCRIPTION` | no | load | one line shown by `harness list` (defaults to the docstring's first line) |
| `VERSION` | no | load | your version label; the file's source hash is always recorded too |
| `PARAMS` | no | load | a sequence of `Param`, each settable as `--param name=value` |
| `METRICS` | no | load | a sequence of `Metric`: extra per-cell figures that `verify`'s checks report |
| `SERVICES` | no | load | services it needs, e.g. `("postgres",)`; the harness starts them |
| `services(params)` | no | parent, run start | services needed for these params (replaces `SERVICES`) |
| `prepare(ctx)` | no | parent, once per run | fixtures, data, schema |
| `service_config(ctx)` | no | parent, after prepare | service options, e.g. `{"suppliers": {...}}` |
| `units(ctx)` | yes | parent, before every cell | the list of `Unit` to execute (deterministic) |
| `schedule(ctx, units)` | no | cell, before t0 | each unit's arrival offset in seconds (an open workload); absent: all due at t0 |
| `work(unit, ctx)` | yes | cell: a worker thread, process or Dask worker | executes one unit; returns `UnitResult` (or None) or raises |
| `async awork(unit, ctx)` | no | cell: the asyncio executor's loop | `async def` version of `work` using truly async I/O |
| `reset(ctx)` | no | parent, before every cell | puts the world back so every cell starts alike |
| `verify(ctx)` | no | parent, after every cell | returns a list of `Check`; without it the scenario is unverified |
| `recover(ctx)` | no | parent, after verify | a recovery run from the state the cell left; its `Check`s are appended to verify's (`ctx.extra["run_s"]` holds the cell's run phase) |
| `bound(ctx, mode)` | no | parent, after every cell | a lower bound on the makespan in seconds for the mode's executor, or None |
| `close_worker(ctx)` | no | cell, after the mode finished | closes the cell's connections and clients |
| `async aclose_worker(ctx)` | no | cell: the asyncio executor's loop, at its end | `async def`: closes async resources on the loop that made them |
| `teardown(ctx)` | no | parent, once per run | after the last cell, even when a cell failed |
<!-- hooks:end -->
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal


class ScenarioError(Exception):
    """A scenario file or its configuration is broken; the message names what and where."""


class ParamError(ScenarioError):
    """A ``--param`` is unknown or has a bad value; the message names the key."""


@dataclass(frozen=True)
class Hook:
    """One name the harness looks up in a scenario module: a constant or a function.

    ``signature`` is how the harness calls it (the loader checks a function accepts exactly
    that many positional arguments); ``where`` says in which process and when it runs.
    """

    signature: str  # "work(unit, ctx)"; a constant's is its name
    kind: Literal["constant", "function", "coroutine"]
    where: str
    doc: str
    required: bool = False

    @property
    def name(self) -> str:
        return self.signature.split("(")[0]

    @property
    def params(self) -> tuple[str, ...]:
        """The parameter names of a function hook, from its signature (``()`` for constants)."""
        if "(" not in self.signature:
            return ()
        inside = self.signature[self.signature.index("(") + 1:self.signature.rindex(")")]
        return tuple(p.strip() for p in inside.split(",") if p.strip())


_LOAD, _FN, _CO = "load", "function", "coroutine"
_PARENT, _CELL = "parent", "cell"
HOOKS: tuple[Hook, ...] = (
    Hook("NAME", "constant", _LOAD, "scenario name (defaults to the file name)"),
    Hook("DESCRIPTION", "constant", _LOAD,
         "one line shown by `harness list` (defaults to the docstring's first line)"),
    Hook("VERSION", "constant", _LOAD,
         "your version label; the file's source hash is always recorded too"),
    Hook("PARAMS", "constant", _LOAD,
         "a sequence of `Param`, each settable as `--param name=value`"),
    Hook("METRICS", "constant", _LOAD,
         "a sequence of `Metric`: extra per-cell figures that `verify`'s checks report"),
    Hook("SERVICES", "constant", _LOAD,
         "services it needs, e.g. `(\"postgres\",)`; the harness starts them"),
    Hook("services(params)", _FN, f"{_PARENT}, run start",
         "services needed for these params (replaces `SERVICES`)"),
    Hook("prepare(ctx)", _FN, f"{_PARENT}, once per run", "fixtures, data, schema"),
    Hook("service_config(ctx)", _FN, f"{_PARENT}, after prepare",
         "service options, e.g. `{\"suppliers\": {...}}`"),
    Hook("units(ctx)", _FN, f"{_PARENT}, before every cell",
         "the list of `Unit` to execute (deterministic)", required=True),
    Hook("schedule(ctx, units)", _FN, f"{_CELL}, before t0",
         "each unit's arrival offset in seconds (an open workload); absent: all due at t0"),
    Hook("work(unit, ctx)", _FN, f"{_CELL}: a worker thread, process or Dask worker",
         "executes one unit; returns `UnitResult` (or None) or raises", required=True),
    Hook("awork(unit, ctx)", _CO, f"{_CELL}: the asyncio executor's loop",
         "`async def` version of `work` using truly async I/O"),
    Hook("reset(ctx)", _FN, f"{_PARENT}, before every cell",
         "puts the world back so every cell starts alike"),
    Hook("verify(ctx)", _FN, f"{_PARENT}, after every cell",
         "returns a list of `Check`; without it the scenario is unverified"),
    Hook("recover(ctx)", _FN, f"{_PARENT}, after verify",
         "a recovery run from the state the cell left; its `Check`s are appended to "
         "verify's (`ctx.extra[\"run_s\"]` holds the cell's run phase)"),
    Hook("bound(ctx, mode)", _FN, f"{_PARENT}, after every cell",
         "a lower bound on the makespan in seconds for the mode's executor, or None"),
    Hook("close_worker(ctx)", _FN, f"{_CELL}, after the mode finished",
         "closes the cell's connections and clients"),
    Hook("aclose_worker(ctx)", _CO, f"{_CELL}: the asyncio executor's loop, at its end",
         "`async def`: closes async resources on the loop that made them"),
    Hook("teardown(ctx)", _FN, f"{_PARENT}, once per run",
         "after the last cell, even when a cell failed"),
)
HOOKS_BY_NAME: dict[str, Hook] = {h.name: h for h in HOOKS}


def hook_table() -> str:
    """:data:`HOOKS` as a Markdown table: the copy in this docstring and in the docs."""
    rows = ["| hook | required | runs in | what |", "|---|---|---|---|"]
    for h in HOOKS:
        shown = f"async {h.signature}" if h.kind == "coroutine" else h.signature
        rows.append(f"| `{shown}` | {'yes' if h.required else 'no'} | {h.where} | {h.doc} |")
    return "\n".join(rows)


def _origin() -> tuple[str, int]:
    """File and line of the code that declared a Param or Metric (outside this module), so a
    bad declaration is reported where it is written."""
    frame = sys._getframe(1)
    here = os.path.abspath(__file__)
    # Skip this module and the dataclass-generated __init__ (its file is "<string>").
    while frame is not None and (frame.f_code.co_filename.startswith("<")
                                 or os.path.abspath(frame.f_code.co_filename) == here):
        frame = frame.f_back
    if frame is None:
        return "?", 0
    return frame.f_code.co_filename, frame.f_lineno


def where(filename: str | os.PathLike[str], line: int) -> str:
    """``path:line`` for messages, relative to the current directory when under it."""
    path = Path(filename)
    try:
        path = path.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return f"{path}:{line}"


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


builtin_type = type  # Param has a field named ``type``
_PARAM_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """A typed scenario parameter with a default, overridable as ``--param name=value``.

    ``type`` defaults to the default's type; pass it when that is too narrow:
    ``Param("rate", 5, type=float)`` accepts ``--param rate=2.5``. The default is checked
    against it when the scenario file loads (a ParamError naming the file and line).
    """

    name: str
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    type: type | None = None  # noqa: A003 (the public keyword: Param(..., type=float))
    # Where it was declared, for messages; an attribute, not a field: asdict() and records
    # hold only the declaration.
    origin: ClassVar[tuple[str, int]] = ("?", 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", _origin())
        kind = builtin_type(self.default) if self.type is None else self.type
        at = where(*self.origin)
        if kind not in _PARAM_TYPES:
            raise ParamError(f"{at}: Param {self.name!r}: type must be one of bool, int, "
                             f"float, str (got {getattr(kind, '__name__', kind)!r})")
        default = self.default
        if kind is float and builtin_type(default) is int:
            default = float(default)  # Param("rate", 5, type=float): the value is 5.0
        if builtin_type(default) is not kind:
            raise ParamError(f"{at}: Param {self.name!r}: default {self.default!r} does not "
                             f"match type={kind.__name__}")
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "default", default)

    def parse(self, text: str) -> Any:
        """Convert a command-line string to this parameter's type, validating it."""
        kind = self.type
        try:
            if kind is bool:
                value: Any = _BOOL_WORDS[text.strip().lower()]
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except (KeyError, ValueError):
            raise ParamError(
                f"--param {self.name}={text!r}: expected {kind.__name__} (default {self.default!r})"
            ) from None
        return self.validate(value)

    def validate(self, value: Any) -> Any:
        """Check range and choices; return the value."""
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ParamError(f"--param {self.name}={value!r}: must be one of {allowed}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"--param {self.name}={value!r}: must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"--param {self.name}={value!r}: must be <= {self.maximum}")
        return value


@dataclass(frozen=True)
class Unit:
    """One piece of work. ``payload`` must be picklable (processes and Dask ship it)."""

    id: str
    group: str = "all"
    payload: Any = None


@dataclass
class UnitResult:
    """What ``work`` may return: how much it produced and how hard it had to try."""

    rows: int = 0
    bytes: int = 0
    attempts: int = 1
    retries: dict[str, int] = field(default_factory=dict)  # cause -> count, e.g. {"429": 3}


@dataclass(frozen=True)
class Metric:
    """An extra per-cell figure a scenario declares in ``METRICS``: duplicates, orphans,
    ordering violations, lost updates. Its value is the ``actual`` of the ``verify`` checks
    that name it (``Check(..., metric="duplicates")``); see :func:`metric_values`."""

    name: str
    unit: str
    lower_is_better: bool = True
    help: str = ""
    # Where it was declared, for messages; an attribute, not a field: asdict() and records
    # hold only the declaration.
    origin: ClassVar[tuple[str, int]] = ("?", 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", _origin())
        if not self.name.isidentifier():
            raise ScenarioError(f"{where(*self.origin)}: Metric {self.name!r}: the name must "
                                "be an identifier (it becomes a column and a --budget key)")


@dataclass(frozen=True)
class Check:
    """One correctness check from ``verify``: what should have landed vs what did.

    ``metric`` names a declared :class:`Metric` whose value this check's ``actual`` reports
    (a number); the check stays a pass/fail check as well.
    """

    name: str
    expected: Any
    actual: Any
    ok: bool
    detail: str = ""
    metric: str | None = None


def metric_values(checks: Iterable[Check | Mapping[str, Any]],
                  metrics: Iterable[Metric | Mapping[str, Any] | str]) -> dict[str, float]:
    """The declared metrics' values in one cell's ``verify`` checks: ``{name: value}``.

    ``checks`` are :class:`Check` objects or their recorded dicts (``cell.json``'s
    ``verify``); ``metrics`` are :class:`Metric` objects, their dicts or plain names. A
    metric reported by several checks is their sum; one no check reports is absent (not 0:
    not measured is not zero). A check naming an undeclared metric, or whose ``actual`` is
    not a number, is a ScenarioError naming the check.
    """
    declared = [m if isinstance(m, str) else
                (m["name"] if isinstance(m, Mapping) else m.name) for m in metrics]
    values: dict[str, float] = {}
    for check in checks:
        get = check.get if isinstance(check, Mapping) else \
            (lambda key, default=None, c=check: getattr(c, key, default))
        name = get("metric")
        if name is None:
            continue
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ScenarioError(f"check {get('name')!r} reports metric {name!r}, which the "
                                f"scenario's METRICS does not declare (declared: {known})")
        actual = get("actual")
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            raise ScenarioError(f"check {get('name')!r} reports metric {name!r} but its "
                                f"actual {actual!r} is not a number")
        values[name] = values.get(name, 0.0) + float(actual)
    return values


class UnitFailure(Exception):
    """Raise from ``work`` to fail a unit while reporting its attempts and retries.

    Plain exceptions are recorded too; this one carries the bookkeeping of a unit that
    retried before giving up, so retry amplification is measured even for failures.
    """

    def __init__(self, cause: BaseException, attempts: int = 1,
                 retries: dict[str, int] | None = None):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.attempts = attempts
        self.retries = dict(retries or {})


@dataclass
class Context:
    """What a scenario's functions receive.

    Plain data only, so it pickles into worker processes: ``params`` (typed values),
    ``services`` (connection details such as ``{"postgres": {"dsn": ...}}``), the cell's
    identity and execution settings, and ``data_dir``/``work_dir`` folders.
    ``local`` is per-thread, per-process scratch space for connections and clients;
    it is never pickled.
    """

    scenario: str
    params: dict[str, Any]
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_dir: Path = Path(".harness/data")
    work_dir: Path = Path(".harness/work")
    run_id: str = ""
    cell_id: str = "prepare"
    mode: str = ""
    workers: int = 1
    concurrency: int = 1  # the most units this cell may run at once (for pool sizing)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._local = threading.local()

    @property
    def local(self) -> threading.local:
        """Thread-local scratch space (connections, HTTP sessions); lost on pickling."""
        return self._local

    def resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """Return this thread's ``name`` resource, creating it once with ``factory``."""
        value = getattr(self._local, name, None)
        if value is None:
            value = factory()
            setattr(self._local, name, value)
        return value

    @property
    def schema(self) -> str:
        """A PostgreSQL schema name unique to this run's cell (scenarios that write per cell);
        the run id's random suffix keeps two runs sharing one database apart."""
        run = self.run_id.rsplit("-", 1)[-1]
        name = f"{self.scenario[:24]}_{run}_{self.cell_id}"
        return "".join(c if c.isalnum() else "_" for c in name).lower()[:63]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


def write_hook_tables(*paths: Path) -> None:
    """Replace the table between the ``hooks:begin``/``hooks:end`` markers in each file
    (``python -m harness.scenario --write``: this module and ``docs/extending.md``)."""
    import re

    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = re.sub(r"<!-- hooks:begin -->\n.*?<!-- hooks:end -->",
                     lambda _: f"<!-- hooks:begin -->\n{hook_table()}\n<!-- hooks:end -->",
                     text, count=1, flags=re.S)
        if new != text:
            path.write_text(new, encoding="utf-8")


if __name__ == "__main__":  # python -m harness.scenario [--write]
    if sys.argv[1:] == ["--write"]:
        here = Path(__file__).resolve()
        write_hook_tables(here, here.parent.parent / "docs" / "extending.md")
    else:
        print(hook_table())
