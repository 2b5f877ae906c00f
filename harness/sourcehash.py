"""The hash of a scenario's code: its file plus every project module it imports.

A scenario file is a thin shell: csv_ingest's work is done in ``harness/workloads/*.py``.
Hashing the file alone (the scenario ``version``) lets a change in ``pgload.py`` pass as
"the same code", so runs before and after it would be compared as like with like.

How the imports are found, and why this way: :class:`modulefinder.ModuleFinder` reads the
scenario's bytecode and follows every ``import`` it meets, *including imports inside
functions* (the lazy imports the design asks for: ``work()`` importing psycopg or a
workload module only in the child). Nothing is executed. Looking at ``sys.modules`` after
loading the scenario would miss those lazy imports, and in the parent it would also hold
whatever the harness itself imported (runner, analysis), which says nothing about this
scenario. The walk descends only into files under the *roots* (by default the ``harness``
package and the scenario's own folder): the standard library and third-party packages are
noted and not scanned (their versions are in the fingerprint's packages), which keeps the
walk to a few tens of milliseconds.

Not seen: imports by computed name (``importlib.import_module(name)``) and files read as
data. The harness's own machinery (modes, the cell driver) is covered by the harness
commit and the hash of its uncommitted diff in the run's metadata, not here.
"""

from __future__ import annotations

import hashlib
import modulefinder
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

HARNESS_PACKAGE = Path(__file__).resolve().parent


@dataclass
class CodeHash:
    """``digest`` over ``files`` (paths shown relative to the folder above their root)."""

    digest: str
    files: list[str] = field(default_factory=list)


def default_roots(scenario_path: Path) -> list[Path]:
    """The folders whose modules count as the project's: the harness package and the
    scenario's own folder (``scenarios/``, or a user's folder beside their scenario)."""
    return [HARNESS_PACKAGE, Path(scenario_path).resolve().parent]


class _ProjectFinder(modulefinder.ModuleFinder):
    """A ModuleFinder that scans only modules whose file lies under ``roots``."""

    def __init__(self, roots: Sequence[Path], path: list[str]):
        super().__init__(path=path)
        self.roots = [Path(r).resolve() for r in roots]

    def owns(self, pathname: str | None) -> bool:
        if not pathname:
            return False
        resolved = Path(pathname).resolve()
        return any(resolved.is_relative_to(root) for root in self.roots)

    def load_module(self, fqname: str, fp: Any, pathname: str, file_info: Any) -> Any:
        if self.owns(pathname):
            try:
                return super().load_module(fqname, fp, pathname, file_info)
            except SyntaxError:  # hashed all the same; it fails when run, not here
                pass
        module = self.add_module(fqname)  # outside the project: noted, never scanned
        module.__file__ = pathname
        return module


def _shown(path: Path, roots: Iterable[Path]) -> str:
    for root in roots:
        if path.is_relative_to(root):
            return path.relative_to(root.parent).as_posix()
    return path.as_posix()


def code_hash(scenario_path: Path, roots: Sequence[Path] | None = None) -> CodeHash:
    """Hash ``scenario_path`` and every module under ``roots`` it imports, directly or
    through other project modules. The digest covers each file's shown path and bytes, so
    it is the same in two checkouts of the same code and changes with any byte of any
    of those files."""
    scenario_path = Path(scenario_path).resolve()
    roots = [Path(r).resolve() for r in (roots or default_roots(scenario_path))]
    # The harness package's parent first: ``import harness`` means this harness, as at run
    # time (the scenario's folder is not on sys.path at run time, so it is not added here).
    finder = _ProjectFinder(roots, [str(HARNESS_PACKAGE.parent), *sys.path])
    finder.run_script(str(scenario_path))
    files = {scenario_path}
    files.update(Path(m.__file__).resolve() for m in finder.modules.values()
                 if finder.owns(getattr(m, "__file__", None)))
    digest = hashlib.sha256()
    shown = sorted((_shown(p, roots), p) for p in files)
    for name, path in shown:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return CodeHash(digest.hexdigest()[:16], [name for name, _ in shown])
