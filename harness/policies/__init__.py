"""Dispatch policies, one file each, collected in a registry: WHEN and in which ORDER.

Adding one means adding one file here that defines a
:class:`~harness.policies.base.Policy` subclass decorated with :func:`register`; tests
are parametrized over the registry, and every executor runs under it.
"""

from __future__ import annotations

from harness.policies.base import Policy, PolicyError
from harness.registry import load_plugins

REGISTRY: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a policy available by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def all_policies() -> dict[str, type[Policy]]:
    """Every registered policy by name, simplest first."""
    return load_plugins(__name__, __path__, REGISTRY, ("base", "groups"))


def get_policy(name: str) -> type[Policy]:
    """The policy class called ``name``; PolicyError naming the known ones otherwise."""
    policies = all_policies()
    if name not in policies:
        raise PolicyError(f"unknown policy {name!r} (available: {', '.join(policies)})")
    return policies[name]


__all__ = ["Policy", "PolicyError", "REGISTRY", "register", "all_policies", "get_policy"]
