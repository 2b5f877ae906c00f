"""Find and load scenario files: one file in ``scenarios/`` is one scenario.

Scenario modules are loaded by path under a stable module name (``harness_scenario_<name>``)
so a worker process can load the same file again and unpickle units and payloads that
reference the module's own classes. A file outside the repo works the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from harness.hookcheck import check_module
from harness.scenario import HOOKS, Metric, Param, ParamError, ScenarioError

# Derived from the one hook table (harness.scenario.HOOKS), never listed by hand.
REQUIRED_FUNCTIONS = tuple(h.name for h in HOOKS if h.required and h.kind != "constant")
OPTIONAL_FUNCTIONS = tuple(h.name for h in HOOKS if not h.required and h.kind != "constant")


def scenario_dirs() -> list[Path]:
    """Folders searched for scenarios by name, first match wins."""
    dirs = []
    if env := os.environ.get("HARNESS_SCENARIOS"):
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(Path.cwd() / "scenarios")
    dirs.append(Path(__file__).resolve().parent.parent / "scenarios")
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def discover() -> dict[str, Path]:
    """All scenario files found, by name (file stem)."""
    found: dict[str, Path] = {}
    for folder in scenario_dirs():
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                found.setdefault(path.stem, path)
    return found


@dataclass
class LoadedScenario:
    """A scenario module plus what the harness derived from it."""

    name: str
    path: Path
    module: ModuleType
    description: str
    params: dict[str, Param]
    services: tuple[str, ...]
    version: str  # hash of the file's source: results from different code never mix
    verified: bool = False  # it defines verify(ctx); without it every mode is "unverified"
    metrics: tuple[Metric, ...] = ()  # declared in METRICS; values come from verify's checks

    def function(self, name: str) -> Callable[..., Any] | None:
        return getattr(self.module, name, None)

    def has(self, name: str) -> bool:
        return callable(getattr(self.module, name, None))

    def resolve_params(self, overrides: dict[str, str]) -> dict[str, Any]:
        """Defaults updated with ``--param`` strings, each validated; unknown keys refused."""
        values = {name: p.default for name, p in self.params.items()}
        for key, text in overrides.items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise ParamError(f"--param {key}: unknown parameter for scenario "
                                 f"{self.name!r} (known: {known})")
            values[key] = self.params[key].parse(text)
        return values


def module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"harness_scenario_{path.stem}_{digest}"


_LOAD_LOCK = threading.RLock()


def load_path(path: Path) -> LoadedScenario:
    """Load a scenario from a file path (cached per process; safe to call from threads)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    with _LOAD_LOCK:  # the module is registered before it runs: others must not see it half-made
        return _load_locked(path)


def forget(path: Path) -> None:
    """Drop this process's copy of the scenario at ``path``: the next load reads the file
    again (a long-lived worker, after the file changed)."""
    with _LOAD_LOCK:
        sys.modules.pop(module_name(Path(path).resolve()), None)


def _load_locked(path: Path) -> LoadedScenario:
    name = module_name(path)
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ScenarioError(f"{path}: not a loadable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except ScenarioError:  # e.g. a bad Param default: already names the file and line
            sys.modules.pop(name, None)
            raise
        except Exception as exc:  # a broken scenario file is the user's to fix: say where
            sys.modules.pop(name, None)
            raise ScenarioError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
    try:
        return _describe(path, module)
    except ScenarioError:
        sys.modules.pop(name, None)  # refused: a fixed file loads afresh, never half-checked
        raise


def _describe(path: Path, module: ModuleType) -> LoadedScenario:
    params, metrics = check_module(path, module)  # typos, signatures, declarations
    source = path.read_bytes()
    return LoadedScenario(
        name=getattr(module, "NAME", path.stem),
        path=path,
        module=module,
        description=getattr(module, "DESCRIPTION", (module.__doc__ or "").strip().split("\n")[0]),
        params=params,
        services=tuple(getattr(module, "SERVICES", ())),
        version=str(getattr(module, "VERSION", "")) + hashlib.sha256(source).hexdigest()[:12],
        verified=callable(getattr(module, "verify", None)),
        metrics=metrics,
    )


def load(name_or_path: str) -> LoadedScenario:
    """Load a scenario by name (searched in scenario folders) or by file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".py" or os.sep in name_or_path:
        return load_path(candidate)
    found = discover()
    if name_or_path not in found:
        known = ", ".join(sorted(found)) or "none found"
        raise ScenarioError(f"unknown scenario {name_or_path!r} (available: {known}); "
                            "pass a path to a .py file to use one outside scenarios/")
    return load_path(found[name_or_path])
