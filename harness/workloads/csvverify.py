"""Reconcile what a csv_ingest cell loaded against what its files must yield, and hold the
supplier server's own request log against its rate limit.

Expectations are per file (:class:`Expected`): from the generator's ``files.csv`` for a
generated data set, from ``expected.json`` for a folder of hand-made files. The cell's
side comes from its tables (queries built from :mod:`harness.workloads.csvtables`). Every
file must be accounted for line by line:

    lines read = rows loaded + lines quarantined + lines skipped,

with the counts the loader wrote in ``loaded_files`` matching the rows really in
``staging`` and ``quarantine``; and where an expectation exists, the lines, rows, reasons
and skipped lines must be those expected. No (file, line) may appear twice.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from harness.scenario import Check
from harness.workloads import csvtables
from harness.workloads.csvgen import expectations

Query = Callable[[str], list[tuple[Any, ...]]]
EXPECTED_FILE = "expected.json"


@dataclass(frozen=True)
class Expected:
    """What one file must yield: physical lines, rows loaded, quarantined records by
    reason (a whole rejected file is one record) and skipped lines by reason."""

    name: str
    lines: int
    loaded: int
    quarantined: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def generated(dataset: Path) -> Iterator[Expected]:
    """The expectations of a generated data set (its ``files.csv``)."""
    for exp in expectations(dataset):
        header = {"header": 1} if exp.rows or exp.file_reason == "header_only" else {}
        quarantined = {exp.file_reason: 1} if exp.file_reason else dict(exp.malformed)
        yield Expected(exp.name, exp.lines, exp.valid, quarantined, header)


def hand_made(folder: Path) -> list[Expected] | None:
    """The expectations of a folder of hand-made files (``expected.json``), if it has one."""
    path = Path(folder) / EXPECTED_FILE
    if not path.exists():
        return None
    return [Expected(name, e["lines"], e["loaded"], e.get("quarantined", {}),
                     {k: v for k, v in e.get("skipped", {}).items() if v})
            for name, e in json.loads(path.read_text()).items() if not name.startswith("_")]


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


@dataclass
class _Actual:
    """One loaded file as the cell's tables hold it."""

    loader: str
    account: dict[str, int]
    staged: int
    held: int
    held_lines: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> dict[str, int]:
        return {k: self.account[f"skipped_{k}"] for k in ("header", "blank", "repeated_header")
                if self.account[f"skipped_{k}"]}

    def balance_error(self) -> str:
        """Why this file's lines do not add up ("" when they do)."""
        a = self.account
        if a["lines"] != a["rows"] + a["quarantined_lines"] + sum(self.skipped.values()):
            return (f"{a['lines']} lines read != {a['rows']} loaded + {a['quarantined_lines']} "
                    f"quarantined + {sum(self.skipped.values())} skipped")
        if (self.staged, self.held, self.held_lines) != (a["rows"], a["quarantined"],
                                                         a["quarantined_lines"]):
            return (f"tables hold {self.staged} rows / {self.held} records / {self.held_lines} "
                    f"lines, loaded_files says {a['rows']} / {a['quarantined']} / "
                    f"{a['quarantined_lines']}")
        return ""


def _actual(query: Query) -> dict[str, _Actual]:
    files: dict[str, _Actual] = {}
    n = len(csvtables.ACCOUNT)
    for row in query(csvtables.per_file_query()):
        files[row[0]] = _Actual(row[1], dict(zip(csvtables.ACCOUNT, row[2:2 + n])),
                                *map(int, row[2 + n:]))
    for file, reason, count in query(csvtables.reasons_query()):
        if file in files:
            files[file].reasons[reason] = count
    return files


def _mismatches(expected: Iterable[Expected], actual: dict[str, _Actual]) -> dict[str, list[str]]:
    wrong: dict[str, list[str]] = defaultdict(list)
    for exp in expected:
        got = actual.get(exp.name)
        if got is None:
            continue  # reported as missing
        for what, want, have in (("lines", exp.lines, got.account["lines"]),
                                 ("rows", exp.loaded, got.staged),
                                 ("quarantined", dict(sorted(exp.quarantined.items())),
                                  dict(sorted(got.reasons.items()))),
                                 ("skipped", dict(sorted(exp.skipped.items())), got.skipped)):
            if want != have:
                wrong[what].append(f"{exp.name}: {have} (expected {want})")
    return wrong


def reconcile(query: Query, expected: list[Expected] | None, files: list[str]) -> list[Check]:
    """The reconciliation checks of one cell; ``query(sql)`` runs in the cell's schema.
    ``files`` are the cell's units; ``expected`` what they must yield (None: accounting only)."""
    actual = _actual(query)
    failed = {row[0] for row in query(csvtables.failed_query())}
    unbalanced = [f"{name}: {why}" for name, a in actual.items() if (why := a.balance_error())]
    unbalanced += [f"{name}: failed, its lines not loaded" for name in sorted(failed)]
    missing = [f for f in files if f not in actual and f not in failed]
    unknown = sorted((set(actual) | failed) - set(files))
    dups = query(csvtables.duplicates_query())[0]
    orphans = query(csvtables.orphans_query())[0][0]
    lines = sum(a.account["lines"] for a in actual.values())
    loaders = Counter(a.loader for a in actual.values())
    checks = [
        Check("every line accounted for", "lines = loaded + quarantined + skipped, per file",
              f"{lines} lines, {len(unbalanced)} files off", not unbalanced and not missing,
              f"files off: {_few(unbalanced) or 'none'}"),
        Check("every file accounted for", len(files), len(files) - len(missing),
              not missing and not unknown,
              f"loaded {len(actual)} ({dict(loaders)}), failed {len(failed)}, "
              f"missing {_few(missing) or 'none'}, unknown {_few(unknown) or 'none'}"),
        Check("no duplicate (file, line)", 0, dups[0] + dups[1] + orphans,
              dups == (0, 0) and not orphans,
              f"staging {dups[0]}, quarantine {dups[1]}, rows of no loaded file {orphans}"),
    ]
    if expected is not None:
        checks += _expectation_checks(expected, actual)
    return checks


def _expectation_checks(expected: list[Expected], actual: dict[str, _Actual]) -> list[Check]:
    wrong = _mismatches(expected, actual)
    want_rows = sum(e.loaded for e in expected)
    have_rows = sum(a.staged for a in actual.values())
    want_q: Counter[str] = Counter()
    have_q: Counter[str] = Counter()
    for e in expected:
        want_q.update(e.quarantined)
    for a in actual.values():
        have_q.update(a.reasons)
    return [
        Check("staging rows = valid rows expected", want_rows, have_rows,
              want_rows == have_rows and not wrong["rows"],
              f"files with the wrong row count: {_few(wrong['rows']) or 'none'}"),
        Check("quarantine = expected, by reason", sum(want_q.values()), sum(have_q.values()),
              not wrong["quarantined"],
              f"expected {dict(sorted(want_q.items()))}, got {dict(sorted(have_q.items()))}; "
              f"files off: {_few(wrong['quarantined']) or 'none'}"),
        Check("lines read and skipped = expected", sum(e.lines for e in expected),
              sum(a.account["lines"] for a in actual.values()),
              not wrong["lines"] and not wrong["skipped"],
              f"lines off: {_few(wrong['lines']) or 'none'}; "
              f"skipped off: {_few(wrong['skipped']) or 'none'}"),
    ]


def connections_check(query: Query, pool_size: int) -> Check:
    """Server sessions that loaded files (``loaded_files.backend``) vs the pool size."""
    used = query(csvtables.backends_query())[0][0]
    return Check("connections used <= pool size", pool_size, used, used <= pool_size,
                 "distinct server sessions that loaded files; the pool follows the "
                 "mode's concurrency")


def rate_check(log: Path, rate: float, burst: float, since: float) -> Check:
    """Replay the server's request log (from ``since``, wall clock) through a token bucket
    per supplier: an admitted request (anything but 429) without a token is a violation.
    The bucket is taken as full at ``since``, which can only overstate the tokens."""
    name = "supplier rate never exceeded (server log)"
    limit = f"<= {rate:g}/s per supplier, burst {burst:g}"
    if rate <= 0:
        return Check(name, "unlimited", "unlimited", True, "rate limit disabled")
    if not Path(log).exists():
        return Check(name, limit, "no request log", False, str(log))
    admitted: dict[str, list[float]] = defaultdict(list)
    throttled = 0
    with open(log, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if entry.get("supplier") is None or entry["t"] < since:
                continue
            if entry["status"] == 429:
                throttled += 1
            else:
                admitted[entry["supplier"]].append(entry["t"])
    worst, peak = 0.0, 0
    for times in admitted.values():
        times.sort()
        tokens, last = float(burst), since
        for i, t in enumerate(times):
            tokens = min(float(burst), tokens + (t - last) * rate) - 1.0
            last = t
            worst = min(worst, tokens)
            peak = max(peak, i + 1 - bisect.bisect_right(times, t - 1.0))  # last 1 s
    ok = worst > -0.01  # clock granularity: the log's wall clock vs the bucket's monotonic one
    return Check(name, limit, f"peak {peak} in 1 s", ok,
                 f"{sum(map(len, admitted.values()))} admitted, {throttled} answered 429; "
                 f"lowest bucket level {worst:.3f}")
