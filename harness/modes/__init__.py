"""Execution modes, one file each, collected in a registry.

Adding a mode means adding one file here that defines a :class:`~harness.modes.base.Mode`
subclass decorated with :func:`register`; tests are parametrized over the registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from harness.modes.base import Execution, Mode, ModeOptions

REGISTRY: dict[str, type[Mode]] = {}


def register(cls: type[Mode]) -> type[Mode]:
    """Class decorator: make a mode available by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def all_modes() -> dict[str, type[Mode]]:
    """Every registered mode by name, in order of simplicity (serial first)."""
    _load_all()
    return dict(sorted(REGISTRY.items(), key=lambda kv: kv[1].simplicity))


def get_mode(name: str) -> Mode:
    """Instantiate a mode by name; ValueError naming the known ones otherwise."""
    modes = all_modes()
    if name not in modes:
        raise ValueError(f"unknown mode {name!r} (available: {', '.join(modes)})")
    return modes[name]()


__all__ = ["Execution", "Mode", "ModeOptions", "REGISTRY", "register", "all_modes", "get_mode"]
