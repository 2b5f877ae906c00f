"""Modes: an executor under a dispatch policy, named by a spec such as
``threads``, ``threads+interleave``, ``processes+capped(2,100ms)`` or the alias ``grouped``.

A mode's label says all three things that change what it measures: the executor, its
worker count and the policy, e.g. ``serial``, ``threads[8]``, ``threads[8]+interleave``,
``threads[60]+capped(3,200ms)``, ``processes[2]``, ``asyncio(to_thread)[8]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.discovery import LoadedScenario
from harness.executors import Executor, all_executors, get_executor
from harness.policies import Policy, PolicyError, get_policy

ERROR_POLICIES = ("continue", "stop")
# Familiar names kept from the first version: the capped hybrid over a thread pool.
ALIASES = {"grouped": "threads+capped"}
# Run when --modes is not given (the executors that are available here).
DEFAULT_MODES = ("serial", "grouped", "threads", "asyncio", "processes", "dask")
# Added after the capped hybrid when the units have several groups: it reorders like the
# hybrid without capping, so the table tells what the cap buys apart from the order.
INTERLEAVE_CONTROL = "threads+interleave"
_SPEC = re.compile(r"^(?P<executor>[a-z_]+)(\[(?P<workers>[0-9]+)\])?"
                   r"(\+(?P<policy>[a-z_]+)(\((?P<args>[^)]*)\))?)?$")


class ModeError(ValueError):
    """A mode spec is wrong; the message names it and what is known."""


@dataclass(frozen=True)
class ModeOptions:
    """Execution settings of one cell, parsed from the CLI at the edge."""

    workers: int = 8
    on_error: str = "continue"
    group_cap: int = 3
    stagger_s: float = 0.2
    chunksize: int | None = None  # chunked executors: None = adaptive
    dask_address: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModeSpec:
    """A parsed mode spec: which executor, which policy with which arguments."""

    text: str
    executor: str
    policy: str = "fifo"
    policy_args: tuple[str, ...] = ()
    workers: int | None = None  # ``threads[64]``: the spec fixes its worker count (sweeps)

    @classmethod
    def parse(cls, text: str) -> "ModeSpec":
        """Parse ``executor[[workers]][+policy[(args)]]`` (or an alias), e.g. ``threads[64]``;
        ModeError naming what is wrong."""
        canonical = ALIASES.get(text.strip(), text.strip())
        match = _SPEC.match(canonical.replace(" ", ""))
        if not match:
            raise ModeError(f"--modes: cannot read {text!r}: expected executor[+policy(args)], "
                            "e.g. threads, threads+interleave, processes+capped(2,100ms)")
        try:
            get_executor(match["executor"])
            get_policy(match["policy"] or "fifo")
        except (ValueError, PolicyError) as exc:
            raise ModeError(f"--modes {text!r}: {exc}") from None
        args = tuple(a.strip() for a in (match["args"] or "").split(",") if a.strip())
        workers = int(match["workers"]) if match["workers"] else None
        if workers is not None and workers < 1:
            raise ModeError(f"--modes {text!r}: the worker count in [..] must be at least 1")
        return cls(text.strip(), match["executor"], match["policy"] or "fifo", args, workers)

    @property
    def executor_class(self) -> type[Executor]:
        return get_executor(self.executor)

    def build_policy(self, capacity: int, options: ModeOptions) -> Policy:
        defaults = {"group_cap": options.group_cap, "stagger_s": options.stagger_s}
        return get_policy(self.policy).from_args(list(self.policy_args), defaults, capacity)

    def label(self, scenario: LoadedScenario, options: ModeOptions) -> str:
        """``kind[workers]+policy``: everything that changes what the mode measures."""
        text = self.executor_class.describe(scenario, options)
        policy = self.build_policy(options.workers, options).label()
        return f"{text}+{policy}" if policy else text

    @property
    def simplicity(self) -> float:
        """The verdict's tie-break: the executor's rank, then the policy's."""
        return self.executor_class.simplicity * 10 + get_policy(self.policy).simplicity

    def slug(self) -> str:
        """The spec as a folder-name fragment (cell ids)."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.text).strip("_")


def available_defaults() -> list[str]:
    """The default modes whose executor can run here."""
    executors = all_executors()
    return [m for m in DEFAULT_MODES
            if executors[ModeSpec.parse(m).executor].available()[0]]


def available_executors() -> list[str]:
    """Every registered executor that can run here, as a mode spec (under fifo)."""
    return [name for name, cls in all_executors().items() if cls.available()[0]]


def split_modes(text: str) -> list[str]:
    """``--modes`` as a list: commas inside a policy's arguments do not split
    (``serial,processes+capped(2,100ms)`` is two modes)."""
    return [m.strip() for m in re.split(r",(?![^()]*\))", text) if m.strip()]
