"""The scenario protocol: what a workload file in ``scenarios/`` provides.

A scenario is one Python module. It declares its parameters and implements a handful of
module-level functions (module-level so the process pool and Dask can ship them):

========================  ==============================================================
``NAME``                   scenario name (defaults to the file name)
``DESCRIPTION``            one line shown by ``harness list``
``VERSION``                optional; the scenario's source hash is always recorded too
``PARAMS``                 a sequence of :class:`Param`
``SERVICES``               services it needs, e.g. ``("postgres",)``; the harness starts them
``prepare(ctx)``           once per run, in the parent: fixtures, data, schema
``units(ctx)``             the list of :class:`Unit` to execute (deterministic)
``work(unit, ctx)``        executes one unit; returns :class:`UnitResult` (or None) or raises
``awork(unit, ctx)``       optional coroutine version using truly async I/O
``reset(ctx)``             optional; before every cell, in the parent
``verify(ctx)``            optional; after every cell, returns a list of :class:`Check`
``bound(ctx, mode)``       optional lower bound on the makespan in seconds for a mode
``teardown(ctx)``          optional; once per run after the last cell
``close_worker(ctx)``      optional; in each worker process/thread context before it exits
========================  ==============================================================
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ScenarioError(Exception):
    """A scenario file or its configuration is broken; the message names what and where."""


class ParamError(ScenarioError):
    """A ``--param`` is unknown or has a bad value; the message names the key."""


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Param:
    """A typed scenario parameter with a default, overridable as ``--param name=value``."""

    name: str
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def type(self) -> type:
        return type(self.default)

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
class Check:
    """One correctness check from ``verify``: what should have landed vs what did."""

    name: str
    expected: Any
    actual: Any
    ok: bool
    detail: str = ""


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
