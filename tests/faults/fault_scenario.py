"""A small scenario for the fault suite: every unit touches the services it is given.

``--param use=postgres,suppliers,nas`` picks the services; each unit sleeps ``cost_ms``,
then inserts a row in the cell's schema (postgres), asks the supplier server for
``/health`` (suppliers) and reads a file through the FUSE volume (nas), with no retries:
a dead service fails the unit at once. A receipt per unit lets ``verify`` count them.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.scenario import Check, Context, Param, Unit, UnitResult

NAME = "faults"
DESCRIPTION = "units that touch postgres, the supplier server and the NFS-like volume"
PARAMS = (
    Param("units", 60, "number of units", minimum=1),
    Param("cost_ms", 50.0, "sleep per unit", minimum=0.0),
    Param("use", "", "comma-separated services: postgres, suppliers, nas"),
    Param("quote_dsn", False, "test hook: unit 0 fails quoting the DSN, stderr echoes it"),
)


def _use(params: dict[str, Any]) -> list[str]:
    return [s.strip() for s in str(params["use"]).split(",") if s.strip()]


def services(params: dict[str, Any]) -> tuple[str, ...]:
    return tuple(_use(params))


def _state(ctx: Context) -> Path:
    return ctx.data_dir.parent.parent  # <state>/data/<scenario>


def prepare(ctx: Context) -> None:
    (ctx.data_dir / "nas").mkdir(parents=True, exist_ok=True)
    (ctx.data_dir / "nas" / "file.txt").write_text("x" * 1000)
    (ctx.data_dir / "suppliers").mkdir(parents=True, exist_ok=True)


def service_config(ctx: Context) -> dict[str, dict[str, Any]]:
    return {"suppliers": {"data_dir": ctx.data_dir / "suppliers"},
            "nas": {"backing": ctx.data_dir / "nas", "latency_ms": 0.0,
                    "mountpoint": _state(ctx) / "mnt" / f"faults-{ctx.run_id}"}}


def units(ctx: Context) -> list[Unit]:
    return [Unit(id=f"u{i:04d}", group=f"g{i % 2}", payload=i) for i in range(ctx.params["units"])]


def _receipts(ctx: Context) -> Path:
    return ctx.work_dir / "receipts" / ctx.cell_id


def reset(ctx: Context) -> None:
    shutil.rmtree(_receipts(ctx), ignore_errors=True)
    _receipts(ctx).mkdir(parents=True)
    if "postgres" in _use(ctx.params):
        import psycopg

        with psycopg.connect(ctx.services["postgres"]["dsn"], autocommit=True,
                             connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{ctx.schema}"')
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{ctx.schema}".t (unit text)')


def work(unit: Unit, ctx: Context) -> UnitResult:
    time.sleep(ctx.params["cost_ms"] / 1000)
    use = _use(ctx.params)
    if ctx.params["quote_dsn"] and unit.payload == 0:  # what careless code does with secrets
        dsn = ctx.services["postgres"]["dsn"]
        print(f"connecting to {dsn} with {os.environ.get('PGPASSWORD')}", file=sys.stderr)
        raise ConnectionError(f"could not use {dsn}")
    if "postgres" in use:
        import psycopg

        with psycopg.connect(ctx.services["postgres"]["dsn"], autocommit=True,
                             connect_timeout=2) as conn:
            conn.execute(f'INSERT INTO "{ctx.schema}".t VALUES (%s)', [unit.id])
    if "suppliers" in use:
        urllib.request.urlopen(f"{ctx.services['suppliers']['base_url']}/health",
                               timeout=2).close()
    if "nas" in use:
        (Path(ctx.services["nas"]["path"]) / "file.txt").read_bytes()
    fd = os.open(_receipts(ctx) / unit.id, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    return UnitResult(rows=1)


def verify(ctx: Context) -> list[Check]:
    landed = len(os.listdir(_receipts(ctx))) if _receipts(ctx).exists() else 0
    return [Check("units done", ctx.params["units"], landed, landed == ctx.params["units"])]

