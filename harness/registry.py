"""Registries of one-file plugins (executors, policies): import every module of a package
so each registers itself, then list the registered classes simplest first."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable, TypeVar

T = TypeVar("T")


def load_plugins(package: str, path: Iterable[str], registry: dict[str, type[T]],
                 helpers: tuple[str, ...] = ("base",)) -> dict[str, type[T]]:
    """Import every module of ``package`` but ``helpers`` and private ones; the registry
    by name, sorted by each class's ``simplicity``."""
    for info in pkgutil.iter_modules(path):
        if info.name not in helpers and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    return dict(sorted(registry.items(), key=lambda kv: kv[1].simplicity))  # type: ignore[attr-defined]
