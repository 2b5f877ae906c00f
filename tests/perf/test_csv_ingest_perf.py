"""csv_ingest against its references, measured in the same run (make perf).

1. Rows/s of the best mode on the ``local`` source as a ratio of the ``psql \\copy`` ceiling
   on the same data and server (target >= 0.8). Each round is one harness run of the
   candidate modes; its ``prepare`` measures the ceiling (the better of one and two parallel
   psql processes over the clean files, each the median of 3 passes) and every cell's bound
   is ``valid rows / ceiling``,
   so ``bound_s / makespan_s`` *is* the cell's rows/s over the ceiling. The ceiling is
   measured again right after the cells and the ratio uses the mean of the two, so drift of
   a shared machine during the round spreads over both sides. Median over rounds.
   Then each loader (copy, executemany, pandas, orm) in the round's best mode, once, in
   rows/s and as a ratio of the same ceiling: what a team's loading habit costs.
2. The harness's peak RSS at 1x and 10x the number of files (same file size): files stream,
   never all in memory, so the second stays within 1.2x of the first. The harness process
   runs in a fresh interpreter that reports its own ``ru_maxrss``; the cell process's peak
   comes from the sampler's records.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.config import RunConfig
from harness.records import load_run
from harness.runner import Runner
from harness.services.postgres import PostgresService
from harness.workloads import copyceiling, csvgen, pgload

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = ["threads", "asyncio", "processes"]  # serial, grouped (staggered) and dask are slower here
ROUNDS = 3
COPY_TARGET = 0.8
RSS_TARGET = 1.2


def _best_cell(run: Any) -> dict[str, Any]:
    cells = [c for c in run.cells if c["status"] == "ok" and c["bound_s"]]
    assert all(v["ok"] for c in cells for v in c["verify"]), "a cell failed its reconciliation"
    return max(cells, key=lambda c: c["bound_s"] / c["makespan_s"])


@pytest.mark.perf
def test_best_mode_vs_psql_copy_ceiling(benchmark, tmp_path: Path) -> None:
    rounds: list[dict[str, Any]] = []

    def one_round() -> None:
        config = RunConfig(scenario="csv_ingest", modes=CANDIDATES, repeat=1, warmup=False,
                           params={"source": "local", "ceiling_rows": "10000000"},
                           out=tmp_path, progress=False)
        runner = Runner(config, Console(quiet=True))
        run = load_run(runner.run())
        best = _best_cell(run)
        valid_rows = sum(u["rows"] for u in run.units[best["cell_id"]] if u["status"] == "ok")
        before = valid_rows / best["bound_s"]          # rows/s of prepare's ceiling
        after = _ceiling_now(runner)
        ceiling = (before + after) / 2
        rows_per_s = valid_rows / best["makespan_s"]
        rounds.append({"mode": best["label"], "name": best["mode"], "rows_per_s": rows_per_s, "before": before,
                       "after": after, "ratio": rows_per_s / ceiling,
                       "by_mode": {c["label"]: valid_rows / c["makespan_s"] for c in run.cells}})

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    ratio = statistics.median(r["ratio"] for r in rounds)
    best_mode = statistics.mode(r["name"] for r in rounds)
    loaders = _loader_rates(tmp_path, best_mode, statistics.median(r["after"] for r in rounds))
    print(f"\ncsv_ingest local, best mode vs psql \\copy ceiling: {ratio:.2f}x "
          f"(target >= {COPY_TARGET}; median of {ROUNDS} rounds)")
    for i, r in enumerate(rounds, 1):
        modes = ", ".join(f"{m} {v:,.0f}" for m, v in r["by_mode"].items())
        print(f"    round {i}: best {r['mode']} {r['rows_per_s']:,.0f} rows/s vs ceiling "
              f"{r['before']:,.0f} before / {r['after']:,.0f} after = {r['ratio']:.2f}x "
              f"({modes} rows/s)")
    print(f"    loaders in {best_mode}:")
    for loader, (rate, of_ceiling) in loaders.items():
        print(f"        {loader:12s} {rate:12,.0f} rows/s  {of_ceiling:5.2f}x ceiling")
    benchmark.extra_info.update(rounds=rounds, ratio=ratio, target=COPY_TARGET, loaders=loaders)
    assert ratio >= COPY_TARGET, f"best mode reached {ratio:.2f}x of the \\copy ceiling"


def _loader_rates(out: Path, mode: str, ceiling: float) -> dict[str, tuple[float, float]]:
    """Rows/s of every loader in ``mode`` on the same data (one cell each; each verified)."""
    rates = {}
    for loader in pgload.LOADERS:
        config = RunConfig(scenario="csv_ingest", modes=[mode], repeat=1,
                           warmup=False, params={"source": "local", "ceiling_rows": "0",
                                                 "loader": loader},
                           out=out / f"loader-{loader}", progress=False)
        run = load_run(Runner(config, Console(quiet=True)).run())
        [cell] = run.cells
        assert cell["status"] == "ok" and all(v["ok"] for v in cell["verify"]), loader
        rows = sum(u["rows"] for u in run.units[cell["cell_id"]] if u["status"] == "ok")
        rates[loader] = (rows / cell["makespan_s"], rows / cell["makespan_s"] / ceiling)
    return rates


def _ceiling_now(runner: Runner) -> float:
    """The ceiling measured again, right after the round's cells, on the same data and
    server (DATABASE_URL or the embedded one, as the run used)."""
    spec = runner.scenario.module.spec_of(runner.params)
    folder = csvgen.dataset_dir(runner.base_context({}, "x").data_dir, spec)
    service = PostgresService()
    info = service.start()
    try:
        files = csvgen.sample_clean(folder, 10**7)
        return copyceiling.measure(info.dsn, folder, files, f"csv_perf_ceiling_{os.getpid()}").rows_per_s
    finally:
        service.stop()


RSS_PROBE = """
import resource, sys
from harness.cli import main
code = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def _harness_rss(out: Path, files_per_supplier: int) -> dict[str, float]:
    """Peak RSS (MB) of the harness process and of the cell's process tree for one run."""
    args = ["run", "csv_ingest", "--param", "source=local", "--param", "suppliers=20",
            "--param", f"files_per_supplier={files_per_supplier}", "--param", "rows_per_file=200",
            "--param", "heavy_tail=false", "--param", "ceiling_rows=0", "--modes", "threads",
            "--repeat", "1", "--no-warmup", "--no-progress", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    harness_kb = next(int(line.split()[1]) for line in done.stderr.splitlines()
                      if line.startswith("MAXRSS_KB"))
    run = load_run(max((out / "csv_ingest").iterdir()))
    (cell,) = run.cells
    assert all(v["ok"] for v in cell["verify"])
    tree = max(s["rss"] for s in run.samples[cell["cell_id"]] if s["series"] == "tree")
    return {"files": run.cells[0]["units_total"], "harness_mb": harness_kb / 1024,
            "cell_mb": tree / 2**20}


@pytest.mark.perf
def test_peak_rss_at_1x_and_10x_files(benchmark, tmp_path: Path) -> None:
    runs: dict[str, dict[str, float]] = {}

    def measure() -> None:
        runs["1x"] = _harness_rss(tmp_path / "1x", 10)     # 200 files
        runs["10x"] = _harness_rss(tmp_path / "10x", 100)  # 2,000 files

    benchmark.pedantic(measure, rounds=1, iterations=1)
    small, big = runs["1x"], runs["10x"]
    harness_ratio = big["harness_mb"] / small["harness_mb"]
    cell_ratio = big["cell_mb"] / small["cell_mb"]
    print(f"\ncsv_ingest peak RSS, {small['files']:.0f} vs {big['files']:.0f} files of 200 rows: "
          f"harness {small['harness_mb']:.0f} MB vs {big['harness_mb']:.0f} MB = "
          f"{harness_ratio:.2f}x; cell {small['cell_mb']:.0f} MB vs {big['cell_mb']:.0f} MB = "
          f"{cell_ratio:.2f}x (target <= {RSS_TARGET} each)")
    benchmark.extra_info.update(runs=runs, harness_ratio=harness_ratio, cell_ratio=cell_ratio,
                                target=RSS_TARGET)
    assert harness_ratio <= RSS_TARGET and cell_ratio <= RSS_TARGET, runs
