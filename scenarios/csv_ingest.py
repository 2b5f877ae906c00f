"""csv_ingest: the supplier CSV pipeline, on real services, with reconciliation.

Each unit is one supplier file: fetch it (supplier HTTP endpoints with per-supplier rate
limits), or read it (the NFS-like FUSE volume, or a local folder), validate every record,
COPY the valid ones into one PostgreSQL staging table and quarantine the rest with file,
line and reason, in one transaction keyed by the file (a retried file never duplicates
rows). This is the pipeline that broke when it was parallelized naively and was fixed by a
capped, staggered hybrid; ``grouped`` (one group per supplier) is that hybrid.

``verify`` reconciles every cell against the generator's manifest; ``bound`` is the larger
of the rate limit's floor (api: files per supplier / rate) and the rows over the
``psql \\copy`` ceiling measured once per run on the same server and data.
See docs/csv_ingest.md.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.scenario import Check, Context, Param, Unit, UnitFailure, UnitResult
from harness.services.supplier_client import FetchStats, afetch, fetch
from harness.workloads import copyceiling, csvgen, csvverify, db, pgload

NAME = "csv_ingest"
DESCRIPTION = ("supplier CSV files -> validate -> COPY into PostgreSQL + quarantine, "
               "from a NAS volume, rate-limited supplier APIs or a local folder")

# suppliers x files per supplier x rows per file (heavy-tailed sizes average the last).
SCALES = {
    "smoke": (3, 4, 50),
    "default": (20, 10, 1000),    # 200 files, ~200k rows: every mode x 3 in a few minutes
    "seed": (20, 500, 200),       # the article's 10,000 files across 20 suppliers
}
PARAMS = (
    Param("scale", "default", "preset size: smoke (tests), default, seed (10,000 files)",
          choices=tuple(SCALES)),
    Param("source", "nas", "where files come from: nas (FUSE volume, or data_dir), "
          "api (rate-limited supplier endpoints), local (the folder itself)",
          choices=("nas", "api", "local")),
    Param("data_dir", "", "root for the generated files, e.g. a real NFS mount "
          "(/mnt/real-nfs): source=nas then reads it directly; default .harness/data"),
    Param("suppliers", 0, "suppliers (0 = from scale)", minimum=0),
    Param("files_per_supplier", 0, "files per supplier (0 = from scale)", minimum=0),
    Param("rows_per_file", 0, "mean rows per file (0 = from scale)", minimum=0),
    Param("malformed_fraction", 0.1, "share of files carrying malformed rows (~2 % of "
          "their rows each)", minimum=0.0, maximum=1.0),
    Param("heavy_tail", True, "lognormal file sizes (a few files 10-20x the mean)"),
    Param("seed", 0, "generator seed"),
    Param("rate", 3.0, "api: requests per second per supplier (token bucket; 0 = unlimited)",
          minimum=0.0),
    Param("burst", 1.0, "api: bucket capacity (requests back to back)", minimum=1.0),
    Param("error_rate", 0.0, "api: share of admitted requests answered 503", minimum=0.0,
          maximum=1.0),
    Param("api_latency_ms", 0.0, "api: extra delay per request (a remote server)", minimum=0.0),
    Param("request_log", "", "api: keep the server's request log here (default: the run's "
          "scratch folder, removed after the run)"),
    Param("nas_latency_ms", 12.0, "nas: delay per filesystem operation", minimum=0.0),
    Param("nas_slots", 8, "nas: operations the volume serves at once", minimum=1),
    Param("nas_max_threads", 64, "nas: FUSE worker threads", minimum=1),
    Param("ceiling_rows", 300_000, "rows of clean files the \\copy ceiling is measured on "
          "(0 = do not measure)", minimum=0),
)

CEILING_MIN_ROWS = 50_000  # smaller data sets are \copied repeatedly for a steady rate
_cell_started: dict[str, float] = {}  # parent only: wall clock at reset, for the rate check
_ceiling: dict[str, copyceiling.Ceiling] = {}  # parent only: this run's measured ceiling


# ---------------------------------------------------------------------- configuration
def spec_of(params: dict[str, Any]) -> csvgen.Spec:
    """The generator's parameters: the scale preset, overridden where a value is given."""
    suppliers, files, rows = SCALES[params["scale"]]
    return csvgen.Spec(suppliers=params["suppliers"] or suppliers,
                       files_per_supplier=params["files_per_supplier"] or files,
                       rows_per_file=params["rows_per_file"] or rows,
                       malformed_fraction=params["malformed_fraction"],
                       heavy_tail=params["heavy_tail"], seed=params["seed"])


def dataset(ctx: Context) -> Path:
    root = Path(ctx.params["data_dir"]) if ctx.params["data_dir"] else ctx.data_dir
    return _dataset(root, tuple(sorted(ctx.params.items())))


@functools.lru_cache(maxsize=8)
def _dataset(root: Path, params: tuple[tuple[str, Any], ...]) -> Path:
    # Cached: work() resolves a file's path per unit, and the key hashes the whole spec.
    return csvgen.dataset_dir(root, spec_of(dict(params)))


def services(params: dict[str, Any]) -> tuple[str, ...]:
    if params["source"] == "api":
        return ("postgres", "suppliers")
    if params["source"] == "nas" and not params["data_dir"]:
        return ("postgres", "nas")  # with data_dir, that folder is the NAS (a real mount)
    return ("postgres",)


def _state_dir(ctx: Context) -> Path:
    return ctx.data_dir.parents[1]  # the runner's data_dir is <state>/data/<scenario>


def request_log(ctx: Context) -> Path:
    return Path(ctx.params["request_log"] or ctx.work_dir / "supplier-requests.jsonl")


def service_config(ctx: Context) -> dict[str, dict[str, Any]]:
    p, folder = ctx.params, dataset(ctx)
    # One mountpoint per run, outside the run's scratch folder: that one is deleted
    # recursively at the end of the run, which must never walk into a mounted volume.
    mountpoint = _state_dir(ctx) / "mnt" / f"{NAME}-{ctx.run_id}"
    return {"suppliers": {"data_dir": folder, "rate": p["rate"], "burst": p["burst"],
                          "error_rate": p["error_rate"], "latency_ms": p["api_latency_ms"],
                          "log_path": request_log(ctx), "seed": p["seed"]},
            "nas": {"backing": folder, "mountpoint": mountpoint,
                    "latency_ms": p["nas_latency_ms"], "slots": p["nas_slots"],
                    "max_threads": p["nas_max_threads"]}}


# --------------------------------------------------------------------- run lifecycle
def prepare(ctx: Context) -> None:
    folder = dataset(ctx)
    cached = (folder / "manifest.json").exists()
    started = time.perf_counter()
    csvgen.ensure_dataset(folder.parent, spec_of(ctx.params))
    totals = csvgen.manifest(folder)["totals"]
    print(f"data: {totals['files']} files, {totals['rows']} rows, "
          f"{totals['malformed_rows']} malformed, {sum(totals['broken_files'].values())} broken "
          f"({'cached' if cached else f'generated in {time.perf_counter() - started:.1f} s'}) "
          f"in {folder}", file=sys.stderr)
    _remove_stale_mountpoints(_state_dir(ctx) / "mnt")
    if ctx.params["ceiling_rows"]:
        files = csvgen.sample_clean(folder, ctx.params["ceiling_rows"])
        ceiling = copyceiling.measure(ctx.services["postgres"]["dsn"], folder, files,
                                      schema=f"{NAME}_ceiling_{os.getpid()}",
                                      min_rows=min(CEILING_MIN_ROWS, ctx.params["ceiling_rows"]))
        _ceiling[ctx.run_id] = ceiling  # prepare and bound both run in the parent
        levels = ", ".join(f"{n} loaders {rate:,.0f}" for n, rate in ceiling.by_parallelism.items())
        print(f"COPY ceiling ({ceiling.method}, {ceiling.rows} rows in {ceiling.files} files): "
              f"{ceiling.rows_per_s:,.0f} rows/s ({levels})", file=sys.stderr)


def _remove_stale_mountpoints(folder: Path, min_age_s: float = 600.0) -> None:
    """Empty mountpoint folders of earlier runs (rmdir refuses anything mounted or full;
    the age keeps a concurrent run's fresh, not yet mounted folder)."""
    for path in folder.glob(f"{NAME}-*") if folder.is_dir() else ():
        try:
            if time.time() - path.stat().st_mtime > min_age_s:
                path.rmdir()
        except OSError:
            pass


def units(ctx: Context) -> list[Unit]:
    """One unit per file, grouped by supplier, in supplier order (as a pipeline lists them);
    the payload is the file's number in the data set (its id in the staging table)."""
    return [Unit(id=name, group=supplier, payload=number)
            for number, (name, supplier) in enumerate(csvgen.file_names(dataset(ctx)), 1)]


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, pgload.ddl())
    _cell_started[ctx.cell_id] = time.time()


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)


# ------------------------------------------------------------------------- the work
def _path(unit: Unit, ctx: Context) -> Path:
    if ctx.params["source"] == "nas" and not ctx.params["data_dir"]:
        return Path(ctx.services["nas"]["path"]) / unit.id  # the mount, or the folder
    return dataset(ctx) / unit.id


def _url(unit: Unit, ctx: Context) -> str:
    supplier, name = unit.id.split("/", 1)
    return f"{ctx.services['suppliers']['base_url']}/suppliers/{supplier}/files/{name}"


def _result(loaded: pgload.LoadResult, size: int, stats: FetchStats) -> UnitResult:
    return UnitResult(rows=loaded.rows, bytes=size, attempts=max(1, stats.attempts),
                      retries=_retries(stats, copy_fallback=int(bool(loaded.fallback))))


def _retries(stats: FetchStats, **more: int) -> dict[str, int]:
    counts = {"429": stats.throttled, "5xx": stats.server_errors,
              "connection": stats.connection_errors, **more}
    return {cause: n for cause, n in counts.items() if n}


def _failure(exc: Exception, stats: FetchStats) -> UnitFailure:
    return UnitFailure(exc, max(1, stats.attempts), _retries(stats))


def work(unit: Unit, ctx: Context) -> UnitResult:
    stats = FetchStats()
    try:
        if ctx.params["source"] == "api":
            data = fetch(_url(unit, ctx), stats=stats)
        else:
            with open(_path(unit, ctx), "rb") as fh:
                data = fh.read()
        loaded = pgload.load_file(db.connection(ctx), ctx.schema, unit.id, unit.payload, data)
    except Exception as exc:  # the file failed: say so in the database, then record it
        try:
            pgload.record_failure(db.connection(ctx), ctx.schema, unit.id, repr(exc))
        except Exception:
            pass  # the database itself is the problem: verify reports the file missing
        raise _failure(exc, stats) from exc
    return _result(loaded, len(data), stats)


async def _session(ctx: Context) -> Any:
    import aiohttp

    session = getattr(ctx.local, "http", None)
    if session is None:
        session = ctx.local.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, ctx.concurrency)),
            timeout=aiohttp.ClientTimeout(total=60))
    return session


async def awork(unit: Unit, ctx: Context) -> UnitResult:
    """Native async: aiohttp or aiofiles, then psycopg's AsyncConnection from the pool."""
    import aiofiles

    stats = FetchStats()
    pool = await db.async_pool(ctx)
    try:
        if ctx.params["source"] == "api":
            data = await afetch(await _session(ctx), _url(unit, ctx), stats=stats)
        else:
            async with aiofiles.open(_path(unit, ctx), "rb") as fh:
                data = await fh.read()
        async with pool.connection() as conn:
            loaded = await pgload.aload_file(conn, ctx.schema, unit.id, unit.payload, data)
    except Exception as exc:
        try:
            async with pool.connection() as conn:
                await pgload.arecord_failure(conn, ctx.schema, unit.id, repr(exc))
        except Exception:
            pass
        raise _failure(exc, stats) from exc
    return _result(loaded, len(data), stats)


async def aclose_worker(ctx: Context) -> None:
    session = getattr(ctx.local, "http", None)
    if session is not None:
        ctx.local.http = None
        await session.close()
    await db.aclose_worker(ctx)


close_worker = db.close_worker  # scenario hook: close this process's workload connections


# ------------------------------------------------------------------ verify and bound
def _source_note(ctx: Context) -> str:
    p = ctx.params
    if p["source"] == "api":
        return (f"api {ctx.services['suppliers']['base_url']}: {p['rate']:g} requests/s per "
                f"supplier, burst {p['burst']:g}")
    if p["source"] == "local":
        return f"local folder {dataset(ctx)}"
    if p["data_dir"]:
        return f"nas: the mount at {p['data_dir']}"
    nas = ctx.services.get("nas", {})
    if nas.get("available"):
        return (f"nas: FUSE volume at {nas['path']} ({nas.get('latency_ms')} ms per operation, "
                f"{nas.get('slots')} slots)")
    return f"local folder (FUSE unavailable: {nas.get('reason', 'unknown')})"


def verify(ctx: Context) -> list[Check]:
    def query(text: str) -> list[tuple[Any, ...]]:
        return db.query(ctx, text)

    checks = csvverify.reconcile(query, dataset(ctx))
    checks.append(csvverify.connections_check(query, max(1, ctx.concurrency)))
    checks.append(Check("source", ctx.params["source"], _source_note(ctx), True,
                        "where this cell read its files"))
    if ctx.params["source"] == "api":
        checks.append(csvverify.rate_check(request_log(ctx), ctx.params["rate"],
                                           ctx.params["burst"],
                                           _cell_started.get(ctx.cell_id, 0.0)))
    return checks


def bound(ctx: Context, mode: str) -> float | None:
    """No mode can beat the server's own COPY speed, nor (api) the suppliers' rate limits."""
    floors = []
    ceiling = _ceiling.get(ctx.run_id)
    if ceiling is not None and ceiling.rows_per_s > 0:
        floors.append(csvgen.manifest(dataset(ctx))["totals"]["valid_rows"] / ceiling.rows_per_s)
    p = ctx.params
    if p["source"] == "api" and p["rate"] > 0:
        # The bucket starts full: the n-th request of a supplier waits (n - burst) / rate.
        floors.append(max(0.0, spec_of(p).files_per_supplier - p["burst"]) / p["rate"])
    return max(floors) if floors else None
