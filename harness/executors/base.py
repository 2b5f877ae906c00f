"""What every executor shares: the ``concurrent.futures``-shaped interface.

An executor decides WHERE units run (this thread, a pool of threads or processes, an
event loop, a Dask cluster). It knows nothing of groups, order or pacing (that is the
dispatch policy's job) and reads no clock for a record: it calls the driver's
:func:`harness.outcomes.run_timed` where the unit runs and resolves the unit's future
with the record tuple that returns.

Shaped like CPython's ``concurrent.futures.Executor``: one abstract method, ``submit``;
``start`` and ``shutdown`` around it are the cell's set-up and tear-down phases, timed
by the driver apart from the run. A pool that breaks (a worker killed, a cluster lost)
resolves futures with an exception derived from ``concurrent.futures.BrokenExecutor``:
the driver records the cell as crashed instead of reporting a result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from harness.discovery import LoadedScenario
from harness.outcomes import STOPPED, not_run_tuple
from harness.scenario import Context, Unit


class ExecutorBroken(BrokenExecutor):
    """The executor can no longer run units (e.g. a Dask worker died repeatedly)."""


@dataclass
class ExecutorSetup:
    """What an executor needs for one cell (built by the cell process)."""

    scenario: LoadedScenario
    ctx: Context
    workers: int
    chunksize: int | None = None      # chunked executors: None = adaptive
    dask_address: str | None = None
    stop_on_error: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class DoneFuture:
    """A future that is already resolved: what a synchronous executor returns.

    A ``concurrent.futures.Future`` costs ~3.7 us to create and resolve (a Condition and
    its lock); this costs ~0.4 us, which keeps a serial loop of 100 us units within 5 % of
    a bare loop. It offers the part of the Future API the driver uses.
    """

    __slots__ = ("_value",)

    def __init__(self, value: Any):
        self._value = value

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return None

    def add_done_callback(self, fn: Callable[["DoneFuture"], Any]) -> None:
        fn(self)


class Executor(ABC):
    """Runs units; subclasses register with ``@register`` in ``harness.executors``."""

    name: ClassVar[str]
    description: ClassVar[str]
    simplicity: ClassVar[int]          # verdict tie-break: lower is simpler
    default_workers: ClassVar[int | None] = 8
    shows_workers: ClassVar[bool] = True  # labels say "[N]" (serial has no worker count)
    # Every unit has run when submit returns (a loop): the driver then needs no lock.
    synchronous: ClassVar[bool] = False

    def __init__(self, setup: ExecutorSetup):
        self.setup = setup
        self.workers = max(1, setup.workers)
        self.t0_ns = 0          # set by the driver after start(), before the first submit
        self._stopping = False
        self._work = setup.scenario.module.work

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this executor can run here; the reason (an install hint) when not."""
        return True, ""

    @classmethod
    def kind(cls, scenario: LoadedScenario) -> str:
        """The executor's name as labels show it; an executor that falls back says so."""
        return cls.name

    @classmethod
    def describe(cls, scenario: LoadedScenario, options: Any) -> str:
        """The label's executor part: ``kind[workers]`` (``options`` is the cell's
        ModeOptions)."""
        return cls.kind(scenario) + (f"[{options.workers}]" if cls.shows_workers else "")

    @classmethod
    def concurrency(cls, workers: int, n_units: int) -> int:
        """The most units this executor runs at once (used to size connection pools)."""
        return max(1, min(workers, n_units))

    def start(self) -> None:
        """Start workers (pool spawn, cluster start): the cell's set-up phase."""

    @abstractmethod
    def submit(self, unit: Unit) -> Any:
        """Hand ``unit`` over; return a future resolving to its record tuple."""

    def run_now(self, unit: Unit) -> tuple[Any, ...]:
        """A ``synchronous`` executor's short path: run ``unit`` here, return its record
        (the driver's serial loop calls this, skipping the future)."""
        return self.submit(unit).result()

    def run_started(self) -> None:
        """The run phase begins (t0 is set): e.g. start measuring a remote cluster."""

    def run_ended(self) -> None:
        """Every unit has finished: the run phase is over, tear-down comes next."""

    def request_stop(self) -> None:
        """``--on-error stop``: units not yet started resolve as not-run, nothing is
        cancelled mid-flight (a cancelled unit that had started would lie about it)."""
        self._stopping = True

    def not_run(self, unit: Unit) -> tuple[Any, ...]:
        return not_run_tuple(unit, STOPPED)

    def shutdown(self) -> None:
        """Stop workers and release resources: the cell's tear-down phase."""

    def info(self) -> dict[str, Any]:
        """Extra facts for the cell record (pool sizes, chunking, cluster size)."""
        return {"workers": self.workers}
