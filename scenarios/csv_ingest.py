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

import asyncio
import codecs
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from harness.scenario import Check, Context, Param, Unit, UnitFailure, UnitResult
from harness.services.supplier_client import FetchStats, afetch, fetch
from harness.workloads import (copyceiling, csvgen, csvtables, csvverify, db, pgload, saloaders,
                               volumeio)

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
    Param("input_dir", "", "a folder of your own supplier files (any layout, gzip allowed) "
          "instead of generated ones; its expected.json, if any, says what each must yield"),
    Param("encoding", "utf-8", "the suppliers' text encoding, e.g. latin-1 (a line that does "
          "not decode is quarantined)"),
    Param("loader", "copy", "how valid rows reach PostgreSQL: copy (psycopg COPY), "
          "executemany (psycopg), pandas (DataFrame.to_sql, method=multi), orm (SQLAlchemy "
          "session.add_all)", choices=pgload.LOADERS),
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
    Param("nas_choke_ms", 1800.0, "nas: service time at nas_choke_depth outstanding operations "
          "(the server chokes; <= nas_latency_ms: never)", minimum=0.0),
    Param("nas_choke_depth", 200, "nas: outstanding operations at which service takes "
          "nas_choke_ms", minimum=1),
    Param("nas_timeout_ms", 0.0, "nas: soft-mount timeo: an operation unanswered this long "
          "fails with EIO/ETIMEDOUT (0 = hard mount)", minimum=0.0),
    Param("nas_max_handles", 0, "nas: handles one file may have open before EBUSY (0 = no "
          "limit)", minimum=0),
    Param("file_kb", 0, "mean file size in KB, e.g. 2048 for the article's 2 MB files "
          "(sets rows_per_file; 0 = from rows_per_file)", minimum=0),
    Param("stage", False, "api: stage each download on the NAS volume (write, read back) "
          "before loading it, as the article's pipeline did"),
    Param("write_back", False, "append each file's processed output to its supplier's output "
          "file on the NAS volume and fsync it before the commit (writes queue too)"),
    Param("ceiling_rows", 300_000, "rows of clean files the \\copy ceiling is measured on "
          "(0 = do not measure)", minimum=0),
)

ROW_BYTES = 85  # mean bytes of a generated row: file_kb -> rows_per_file
CEILING_MIN_ROWS = 50_000  # smaller data sets are \copied repeatedly for a steady rate
_cell_started: dict[str, float] = {}  # parent only: wall clock at reset, for the rate check
_ceiling: dict[str, copyceiling.Ceiling] = {}  # parent only: this run's measured ceiling


# ---------------------------------------------------------------------- configuration
def spec_of(params: dict[str, Any]) -> csvgen.Spec:
    """The generator's parameters: the scale preset, overridden where a value is given."""
    suppliers, files, rows = SCALES[params["scale"]]
    return csvgen.Spec(suppliers=params["suppliers"] or suppliers,
                       files_per_supplier=params["files_per_supplier"] or files,
                       rows_per_file=(max(1, round(params["file_kb"] * 1024 / ROW_BYTES))
                                      if params["file_kb"] else params["rows_per_file"] or rows),
                       malformed_fraction=params["malformed_fraction"],
                       heavy_tail=params["heavy_tail"], seed=params["seed"])


def dataset(ctx: Context) -> Path:
    """The folder the cell's files are in: the user's ``input_dir`` or the generated set."""
    if ctx.params["input_dir"]:
        return Path(ctx.params["input_dir"]).resolve()
    root = Path(ctx.params["data_dir"]) if ctx.params["data_dir"] else ctx.data_dir
    return _dataset(root, tuple(sorted(ctx.params.items())))


@functools.lru_cache(maxsize=8)
def _dataset(root: Path, params: tuple[tuple[str, Any], ...]) -> Path:
    # Cached: work() resolves a file's path per unit, and the key hashes the whole spec.
    return csvgen.dataset_dir(root, spec_of(dict(params)))


def services(params: dict[str, Any]) -> tuple[str, ...]:
    if params["source"] == "api":
        volume = params["stage"] or params["write_back"]
        return ("postgres", "suppliers", "nas") if volume else ("postgres", "suppliers")
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
                    "max_threads": p["nas_max_threads"], "choke_ms": p["nas_choke_ms"],
                    "choke_depth": p["nas_choke_depth"], "timeout_ms": p["nas_timeout_ms"],
                    "max_handles": p["nas_max_handles"]}}


# --------------------------------------------------------------------- run lifecycle
def _hand_made_files(folder: Path) -> list[str]:
    """Every supplier file of a hand-made folder, relative, sorted (not expected.json,
    READMEs or hidden files)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != csvverify.EXPECTED_FILE
                  and not p.name.startswith((".", "README"))
                  and volumeio.OUT_DIR not in p.relative_to(folder).parts)


def _prepare_hand_made(ctx: Context, folder: Path) -> None:
    if not folder.is_dir():
        raise ValueError(f"input_dir {folder} is not a folder")
    names = _hand_made_files(folder)
    if ctx.params["source"] == "api" and any("/" not in n for n in names):
        raise ValueError("source=api serves <supplier>/<file>: put the files of input_dir "
                         "in one folder per supplier")
    expected = csvverify.hand_made(folder)
    print(f"data: {len(names)} hand-made files in {folder} "
          f"({'with' if expected is not None else 'no'} {csvverify.EXPECTED_FILE}; "
          "no COPY ceiling measured)", file=sys.stderr)


def prepare(ctx: Context) -> None:
    try:
        codecs.lookup(ctx.params["encoding"])
    except LookupError:
        raise ValueError(f"encoding {ctx.params['encoding']!r} is not a codec Python knows "
                         "(e.g. utf-8, latin-1, cp1252)") from None
    folder = dataset(ctx)
    if ctx.params["input_dir"]:
        return _prepare_hand_made(ctx, folder)
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
    the payload is the file's number in the data set (its id in the staging table).
    Hand-made files are grouped by their first folder."""
    if ctx.params["input_dir"]:
        names = [(n, n.split("/", 1)[0] if "/" in n else "files")
                 for n in _hand_made_files(dataset(ctx))]
    else:
        names = list(csvgen.file_names(dataset(ctx)))
    return [Unit(id=name, group=supplier, payload=number)
            for number, (name, supplier) in enumerate(names, 1)]


def reset(ctx: Context) -> None:
    db.fresh_schema(ctx, csvtables.ddl())
    if ctx.params["stage"] or ctx.params["write_back"]:
        volumeio.reset(dataset(ctx), ctx.cell_id, sorted({u.group for u in units(ctx)}))
    _cell_started[ctx.cell_id] = time.time()


def teardown(ctx: Context) -> None:
    db.drop_kept_schema(ctx)
    volumeio.remove(dataset(ctx))


# ------------------------------------------------------------------------- the work
def _volume(ctx: Context) -> Path:
    if "nas" in ctx.services:
        return Path(ctx.services["nas"]["path"])  # the mount, or the folder without FUSE
    return dataset(ctx)  # data_dir: that folder is the NAS


def _path(unit: Unit, ctx: Context) -> Path:
    if ctx.params["source"] == "nas":
        return _volume(ctx) / unit.id
    return dataset(ctx) / unit.id


def _through_volume(unit: Unit, ctx: Context, data: bytes) -> bytes:
    """Stage a download and write the processed output back: the whole file stays in this
    handler's memory until its write is queued, so memory grows with files in flight."""
    if ctx.params["stage"] and ctx.params["source"] == "api":
        data = volumeio.stage(_volume(ctx), ctx.cell_id, unit.id, data)
    if ctx.params["write_back"]:
        volumeio.write_back(_volume(ctx), ctx.cell_id, unit.group, data)
    return data


def _url(unit: Unit, ctx: Context) -> str:
    supplier, name = unit.id.split("/", 1)
    return f"{ctx.services['suppliers']['base_url']}/suppliers/{supplier}/files/{name}"


def _result(loaded: pgload.LoadResult, size: int, stats: FetchStats) -> UnitResult:
    return UnitResult(rows=loaded.rows, bytes=size, attempts=max(1, stats.attempts),
                      retries=_retries(stats))


def _retries(stats: FetchStats, **more: int) -> dict[str, int]:
    counts = {"429": stats.throttled, "5xx": stats.server_errors,
              "connection": stats.connection_errors, **more}
    return {cause: n for cause, n in counts.items() if n}


def _failure(exc: Exception, stats: FetchStats) -> UnitFailure:
    return UnitFailure(exc, max(1, stats.attempts), _retries(stats))


def _engine(ctx: Context) -> Any:
    """This thread's SQLAlchemy engine, over the harness's own connection settings."""
    kwargs = {**db.connect_kwargs(ctx), "autocommit": False}  # SQLAlchemy runs transactions
    dsn = ctx.services["postgres"]["dsn"]
    return ctx.resource("engine", lambda: saloaders.engine(
        lambda: psycopg.connect(dsn, **kwargs)))


def _load(ctx: Context, unit: Unit, data: bytes) -> pgload.LoadResult:
    p = ctx.params
    if p["loader"] in ("copy", "executemany"):
        return pgload.load_file(db.connection(ctx), ctx.schema, unit.id, unit.payload, data,
                                p["encoding"], p["loader"])
    return saloaders.SA_LOADERS[p["loader"]](_engine(ctx), ctx.schema, unit.id, unit.payload,
                                             data, p["encoding"])


def work(unit: Unit, ctx: Context) -> UnitResult:
    stats = FetchStats()
    try:
        if ctx.params["source"] == "api":
            data = fetch(_url(unit, ctx), stats=stats)
        else:
            with open(_path(unit, ctx), "rb") as fh:
                data = fh.read()
        data = _through_volume(unit, ctx, data)
        loaded = _load(ctx, unit, data)
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
    """Native async: aiohttp or aiofiles, then psycopg's AsyncConnection from the pool.
    The pandas and orm loaders have no async API: they run ``work`` in a thread."""
    import aiofiles

    if ctx.params["loader"] not in ("copy", "executemany") or ctx.params["stage"] \
            or ctx.params["write_back"]:  # no async file writes through the volume here
        return await asyncio.to_thread(work, unit, ctx)

    stats = FetchStats()
    pool = await db.async_pool(ctx)
    try:
        if ctx.params["source"] == "api":
            data = await afetch(await _session(ctx), _url(unit, ctx), stats=stats)
        else:
            async with aiofiles.open(_path(unit, ctx), "rb") as fh:
                data = await fh.read()
        async with pool.connection() as conn:
            loaded = await pgload.aload_file(conn, ctx.schema, unit.id, unit.payload, data,
                                             ctx.params["encoding"], ctx.params["loader"])
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


def close_worker(ctx: Context | None = None) -> None:
    """Scenario hook: close this process's workload connections (and engines)."""
    saloaders.dispose_all()
    db.close_worker(ctx)


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

    folder = dataset(ctx)
    expected = (csvverify.hand_made(folder) if ctx.params["input_dir"]
                else list(csvverify.generated(folder)))
    checks = csvverify.reconcile(query, expected, [u.id for u in units(ctx)])
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
    if ceiling is not None and ceiling.rows_per_s > 0 and not ctx.params["input_dir"]:
        floors.append(csvgen.manifest(dataset(ctx))["totals"]["valid_rows"] / ceiling.rows_per_s)
    p = ctx.params
    if p["source"] == "api" and p["rate"] > 0:
        # The bucket starts full: the n-th request of a supplier waits (n - burst) / rate.
        floors.append(max(0.0, spec_of(p).files_per_supplier - p["burst"]) / p["rate"])
    return max(floors) if floors else None
