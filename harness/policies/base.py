"""What every dispatch policy shares: WHEN and in WHICH ORDER units are handed out.

A policy is a small object the driver consults, in the manner of locust's
``LoadTestShape.tick()``: it never runs a unit, starts a thread or reads a clock. The
driver tells it what arrived (``arrive``) and what finished (``finished``), and asks it
for the next unit to hand out now (``next``), or when to ask again (``wake_at``). So a
policy knows nothing of processes or event loops and runs unchanged on every executor,
and it can be tested without running anything.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from harness.scenario import Unit

_MS = re.compile(r"^\s*([0-9.]+)\s*(ms|s)?\s*$")


class PolicyError(ValueError):
    """A policy's arguments are wrong; the message names the policy and the argument."""


def parse_seconds(text: str, what: str) -> float:
    """``"200ms"``, ``"0.2s"`` or ``"200"`` (milliseconds) to seconds."""
    match = _MS.match(text)
    if not match:
        raise PolicyError(f"{what}: expected a duration like 200ms or 0.2s, got {text!r}")
    value = float(match.group(1))
    return value if match.group(2) == "s" else value / 1000


def parse_count(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PolicyError(f"{what}: expected a whole number, got {text!r}") from None
    if value < 1:
        raise PolicyError(f"{what}: must be at least 1, got {value}")
    return value


class Policy(ABC):
    """Hands out units; subclasses register with ``@register`` in ``harness.policies``.

    ``capacity`` is the most units the executor runs at once; a policy that limits
    concurrency keeps within it so a queued unit never holds a slot it is not using.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    simplicity: ClassVar[int]     # added to the executor's: lower is simpler
    #: The positional arguments of the spec, (name, default): what ``harness sweep --vary``
    #: can vary, e.g. capped's ("cap", "3"), ("stagger", "200ms").
    params: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)

    @classmethod
    def from_args(cls, args: list[str], defaults: dict[str, Any], capacity: int) -> "Policy":
        """Build from the arguments of a mode spec (``capped(3,200ms)`` -> ["3", "200ms"]),
        falling back to ``defaults`` (the CLI's --group-cap, --stagger, ...)."""
        if args:
            raise PolicyError(f"{cls.name} takes no arguments, got {','.join(args)!r}")
        return cls(capacity)

    def label(self) -> str:
        """How the policy appears after ``+`` in a mode label ("" for the plain order)."""
        return self.name

    @abstractmethod
    def arrive(self, unit: Unit) -> None:
        """A unit became due (all at t0 for a batch)."""

    @abstractmethod
    def next(self, now_ns: int) -> Unit | None:
        """The unit to hand out now, or None when none may go yet."""

    def wake_at(self, now_ns: int) -> int | None:
        """When (ns after t0) ``next`` may have a unit without anything finishing first;
        None when only a finished unit can free one."""
        return None

    #: True for a policy that adapts to outcomes: the driver then passes each unit's record
    #: tuple (``harness.outcomes`` field order) to ``finished``; others are called with the unit
    #: alone, so a policy written before records were passed keeps working.
    sees_records: ClassVar[bool] = False

    def finished(self, unit: Unit, record: tuple[Any, ...] | None = None) -> None:
        """A unit handed out earlier has finished (ok, failed or not run); ``record`` is its
        record tuple when the policy ``sees_records``."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """How many arrived units wait to be handed out."""

    @abstractmethod
    def remaining(self) -> list[Unit]:
        """Units that arrived and were never handed out (after a stop), emptying them."""

    def info(self) -> dict[str, Any]:
        """Facts for the cell record (caps reached, ...)."""
        return {}
