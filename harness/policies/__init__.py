"""Dispatch policies, one file each, collected in a registry: WHEN and in which ORDER.

Adding one means adding one file here that defines a
:class:`~harness.policies.base.Policy` subclass decorated with :func:`register`; tests
are parametrized over the registry, and every executor runs under it.
"""

from __future__ import annotations

import importlib
import pkgutil

from harness.policies.base import Policy, PolicyError

REGISTRY: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a policy available by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def all_policies() -> dict[str, type[Policy]]:
    """Every registered policy by name, simplest first."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "groups") and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(REGISTRY.items(), key=lambda kv: kv[1].simplicity))


def get_policy(name: str) -> type[Policy]:
    """The policy class called ``name``; PolicyError naming the known ones otherwise."""
    policies = all_policies()
    if name not in policies:
        raise PolicyError(f"unknown policy {name!r} (available: {', '.join(policies)})")
    return policies[name]


__all__ = ["Policy", "PolicyError", "REGISTRY", "register", "all_policies", "get_policy"]
