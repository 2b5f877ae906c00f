"""Load-time checks of a scenario module against the hook table (:data:`HOOKS`).

Hooks are matched by name, so a mistake in a name or a signature would otherwise be
silent: ``def verfiy(ctx)`` turns the correctness checks off and the mode stays eligible.
:func:`check_module` refuses such a file when ``harness list`` or ``harness run`` loads it,
with one line naming the file, the line and the fix.

Edit distance is the optimal-string-alignment variant of Damerau-Levenshtein (a swap of two
neighbours costs 1, as in ``verfiy``), written here in a dozen lines. No dependency of the
project provides one, and :func:`difflib.get_close_matches` is no substitute: it ranks by a
similarity ratio, not by edits, so it pairs ``verify_rows`` with ``verify`` (ratio 0.71, five
edits apart) and its cutoff means different edit counts for short and long names; "at most
two edits" is the rule users can predict.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.scenario import HOOKS, HOOKS_BY_NAME, Hook, Metric, Param, ScenarioError, where

TYPO_DISTANCE = 2  # at most this many edits from a hook name: a typo, not a helper
FUNCTION_HOOKS = tuple(h for h in HOOKS if h.kind != "constant")
CONSTANT_HOOKS = tuple(h for h in HOOKS if h.kind == "constant")


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    adjacent characters each cost 1."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _line(obj: Any, default: Path) -> tuple[str, int]:
    code = getattr(inspect.unwrap(obj), "__code__", None)
    return (code.co_filename, code.co_firstlineno) if code else (str(default), 1)


def _own_functions(module: ModuleType) -> list[tuple[str, Any]]:
    """Functions defined in the scenario file itself (imported ones are someone else's)."""
    own = [(name, obj) for name, obj in vars(module).items()
           if inspect.isfunction(obj) and obj.__module__ == module.__name__]
    return sorted(own, key=lambda item: item[1].__code__.co_firstlineno)


def _own_constants(path: Path) -> list[tuple[str, tuple[str, int]]]:
    """UPPER_CASE names the file itself assigns at module level, with their lines."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError):
        return []  # it imported, so this cannot happen short of a file changed meanwhile
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        found += [(t.id, (str(path), node.lineno)) for t in targets
                  if isinstance(t, ast.Name) and t.id.isupper()]
    return found


def _nearest_missing(name: str, hooks: tuple[Hook, ...], module: ModuleType) -> str | None:
    near = [(edit_distance(name, h.name), h.name) for h in hooks
            if getattr(module, h.name, None) is None]
    near = [item for item in near if item[0] <= TYPO_DISTANCE]
    return min(near, key=lambda item: item[0])[1] if near else None


def check_typos(path: Path, module: ModuleType) -> None:
    """Refuse a module-level function (or UPPER_CASE constant) the file defines within
    :data:`TYPO_DISTANCE` edits of a hook the module does not define (``verfiy``, ``wrk``,
    ``bund``, ``PARMS``). Names starting with ``_`` are helpers; so is a near name beside
    the real hook (``worker`` next to ``work``); imported names are someone else's."""
    candidates = [(name, _line(fn, path), FUNCTION_HOOKS) for name, fn in _own_functions(module)]
    candidates += [(name, line, CONSTANT_HOOKS) for name, line in _own_constants(path)]
    for name, line, hooks in sorted(candidates, key=lambda c: c[1][1]):
        if name in HOOKS_BY_NAME or name.startswith("_"):
            continue
        hook = _nearest_missing(name, hooks, module)
        if hook is not None:
            raise ScenarioError(f"{where(*line)}: {name!r} looks like the hook {hook!r} (a "
                                "typo turns the checks off); rename it, or prefix it with _ "
                                "if it is a helper")


def check_signatures(path: Path, module: ModuleType) -> None:
    """Every hook the module has (its own or imported) can be called the way the harness
    calls it; ``awork``/``aclose_worker`` are ``async def`` and the others are not."""
    for hook in FUNCTION_HOOKS:
        fn = getattr(module, hook.name, None)
        if fn is None:
            continue
        at = where(*_line(fn, path))
        if not callable(fn):
            raise ScenarioError(f"{at}: {hook.name} must be a function {hook.signature}, "
                                f"got {type(fn).__name__}")
        is_coroutine = inspect.iscoroutinefunction(fn)
        if hook.kind == "coroutine" and not is_coroutine:
            raise ScenarioError(f"{at}: {hook.name} must be a coroutine function: "
                                f"async def {hook.signature}")
        if hook.kind == "function" and is_coroutine:
            raise ScenarioError(f"{at}: {hook.name} must be a plain function, not async def "
                                f"(the harness calls {hook.signature} and does not await it)")
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # a builtin or C callable: nothing to read
        try:
            signature.bind(*hook.params)
        except TypeError:
            raise ScenarioError(f"{at}: {hook.name}{signature} does not match the hook: the "
                                f"harness calls {hook.signature}") from None


def check_declarations(path: Path, module: ModuleType) -> tuple[dict[str, Param],
                                                               tuple[Metric, ...]]:
    """``PARAMS`` and ``METRICS`` hold what they should, with unique names and defaults
    that satisfy their own ranges; returns them."""
    params: dict[str, Param] = {}
    for p in getattr(module, "PARAMS", ()):
        if not isinstance(p, Param):
            raise ScenarioError(f"{path}: PARAMS entries must be harness.scenario.Param, got {p!r}")
        try:
            p.validate(p.default)
        except ScenarioError as exc:
            raise ScenarioError(f"{where(*p.origin)}: Param {p.name!r}: bad default: "
                                f"{exc}") from None
        if p.name in params:
            raise ScenarioError(f"{where(*p.origin)}: PARAMS declares {p.name!r} twice")
        params[p.name] = p
    metrics: dict[str, Metric] = {}
    for m in getattr(module, "METRICS", ()):
        if not isinstance(m, Metric):
            raise ScenarioError(f"{path}: METRICS entries must be harness.scenario.Metric, "
                                f"got {m!r}")
        if m.name in metrics:
            raise ScenarioError(f"{where(*m.origin)}: METRICS declares {m.name!r} twice")
        metrics[m.name] = m
    return params, tuple(metrics.values())


def check_module(path: Path, module: ModuleType) -> tuple[dict[str, Param], tuple[Metric, ...]]:
    """Every load-time check, first problem first; returns the declared params and metrics."""
    check_typos(path, module)  # before "must define": ``def wrk`` is a typo, say so
    for hook in HOOKS:
        if hook.required and not callable(getattr(module, hook.name, None)):
            raise ScenarioError(f"{path}: a scenario must define {hook.signature}")
    check_signatures(path, module)
    return check_declarations(path, module)
