"""Executors, one file each, collected in a registry: WHERE units run.

Adding one means adding one file here that defines an
:class:`~harness.executors.base.Executor` subclass decorated with :func:`register`;
tests are parametrized over the registry, and every policy runs on it.
"""

from __future__ import annotations

from harness.executors.base import DoneFuture, Executor, ExecutorBroken, ExecutorSetup
from harness.registry import load_plugins

REGISTRY: dict[str, type[Executor]] = {}
_HELPERS = ("base", "chunks", "dask_usage")


def register(cls: type[Executor]) -> type[Executor]:
    """Class decorator: make an executor available by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def all_executors() -> dict[str, type[Executor]]:
    """Every registered executor by name, simplest first."""
    return load_plugins(__name__, __path__, REGISTRY, _HELPERS)


def get_executor(name: str) -> type[Executor]:
    """The executor class called ``name``; ValueError naming the known ones otherwise."""
    executors = all_executors()
    if name not in executors:
        raise ValueError(f"unknown executor {name!r} (available: {', '.join(executors)})")
    return executors[name]


__all__ = ["DoneFuture", "Executor", "ExecutorBroken", "ExecutorSetup", "REGISTRY",
           "register", "all_executors", "get_executor"]
