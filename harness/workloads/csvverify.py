"""Reconcile what a csv_ingest cell loaded against what the generator wrote, and hold the
supplier server's own request log against its rate limit.

Expected counts come from the data set's ``files.csv``/``manifest.json``; actual counts from
the cell's tables. Every file must be accounted for (loaded, rejected whole, or recorded as
failed), staging must hold exactly the valid rows (file by file), the quarantine exactly the
malformed ones with the generator's reasons, and no (file, line) may appear twice.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from harness.scenario import Check
from harness.workloads.csvgen import expectations, manifest

Query = Callable[[str], list[tuple[Any, ...]]]


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def reconcile(query: Query, dataset: Path) -> list[Check]:
    """The reconciliation checks of one cell; ``query(sql)`` runs in the cell's schema."""
    totals = manifest(dataset)["totals"]
    staged = dict(query("SELECT l.file, s.n FROM (SELECT file_id, count(*) AS n FROM staging "
                        "GROUP BY file_id) s JOIN loaded_files l USING (file_id)"))
    loaded = dict(query("SELECT file, path FROM loaded_files"))
    failed = {row[0] for row in query("SELECT file FROM failed_files")}
    reasons = defaultdict(int)
    for reason, n in query("SELECT reason, count(*) FROM quarantine GROUP BY reason"):
        reasons[reason] = n
    whole = dict(query("SELECT reason, count(*) FROM quarantine WHERE line = 0 GROUP BY reason"))
    duplicates = query("SELECT (SELECT count(*) FROM (SELECT 1 FROM staging GROUP BY file_id, line "
                       "HAVING count(*) > 1) s), (SELECT count(*) FROM (SELECT 1 FROM quarantine "
                       "GROUP BY file, line HAVING count(*) > 1) q)")[0]

    wrong_rows, missing, known = [], [], set()
    for exp in expectations(dataset):
        known.add(exp.name)
        if staged.get(exp.name, 0) != exp.valid:
            wrong_rows.append(f"{exp.name}: {staged.get(exp.name, 0)} of {exp.valid}")
        if exp.name not in loaded and exp.name not in failed:
            missing.append(exp.name)
    unknown = sorted((set(loaded) | failed) - known)
    paths = defaultdict(int)
    for path in loaded.values():
        paths[path] += 1
    row_reasons = {r: n - whole.get(r, 0) for r, n in reasons.items() if n - whole.get(r, 0)}
    expected_reasons = dict(totals["malformed_by_reason"])
    staged_total = query("SELECT count(*) FROM staging")[0][0]
    orphans = staged_total - sum(staged.values())  # rows whose file id no loaded file has
    quarantined = sum(row_reasons.values())
    return [
        Check("staging rows = valid rows generated", totals["valid_rows"], staged_total,
              staged_total == totals["valid_rows"],
              f"files with the wrong row count: {_few(wrong_rows) or 'none'}; "
              f"rows of no loaded file: {orphans}"),
        Check("quarantined rows = malformed rows generated", totals["malformed_rows"],
              quarantined, quarantined == totals["malformed_rows"]
              and row_reasons == expected_reasons,
              f"by reason: expected {_sorted(expected_reasons)}, got {_sorted(row_reasons)}"),
        Check("broken files quarantined whole", _sorted(totals["broken_files"]), _sorted(whole),
              whole == totals["broken_files"], "line 0 rows: empty, header only, not a CSV"),
        Check("no duplicate (file, line)", 0, duplicates[0] + duplicates[1],
              duplicates == (0, 0), f"staging {duplicates[0]}, quarantine {duplicates[1]}"),
        Check("every file accounted for", totals["files"], len(known) - len(missing),
              not missing and not unknown,
              f"loaded {dict(sorted(paths.items()))}, failed {len(failed)}, "
              f"missing {_few(missing) or 'none'}, unknown {_few(unknown) or 'none'}"),
    ]


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def connections_check(query: Query, pool_size: int) -> Check:
    """Server sessions that loaded files (``loaded_files.backend``) vs the pool size."""
    used = query("SELECT count(DISTINCT backend) FROM loaded_files")[0][0]
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
