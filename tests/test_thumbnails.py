"""thumbnails on the NFS-like volume: every executor and the lanes hybrid write every
thumbnail at its exact size; verify catches a missing, a wrong-sized and an extra file."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from harness.discovery import load
from harness.executors import all_executors
from harness.scenario import Context
from tests.runhelp import run_scenario

SMALL = {"images": 8, "monsters": 1, "side_px": 96, "monster_px": 640, "thumb_px": 32,
         "nas_latency_ms": 1.0}


def params(**extra):
    mod = load("thumbnails").module
    return {**{p.name: p.default for p in mod.PARAMS}, **SMALL, **extra}


def ok_cells(run, n):
    for cell in run.cells:
        assert cell["status"] == "ok", (cell["mode"], cell["message"])
        assert cell["units_ok"] == n
        assert all(c["ok"] for c in cell["verify"]), (cell["mode"], cell["verify"])
        assert cell["bound_s"] is None or cell["makespan_s"] >= cell["bound_s"]


@pytest.mark.parametrize("executor", list(all_executors()))
def test_every_executor_writes_every_thumbnail_to_the_volume(tmp_path, executor):
    ok, why = all_executors()[executor].available()
    if not ok:
        pytest.skip(f"{executor} unavailable: {why}")
    run = run_scenario(tmp_path, "thumbnails", [executor], SMALL, workers={"*": 2})
    ok_cells(run, SMALL["images"])
    groups = {u["group"] for u in run.units[run.cells[0]["cell_id"]]}
    assert groups == {"big", "small"}


def test_the_lanes_hybrid_keeps_the_monster_alone_in_its_lane(tmp_path):
    run = run_scenario(tmp_path, "thumbnails", ["threads+lanes(1,big)"],
                       {**SMALL, "monsters": 2, "rate": 200.0}, workers={"*": 3})
    ok_cells(run, SMALL["images"])
    (cell,) = run.cells
    units = run.units[cell["cell_id"]]
    big = [(u["start_ns"], u["end_ns"]) for u in units if u["group"] == "big"]
    (a, b) = sorted(big)
    assert a[1] <= b[0]  # one lane slot: the two monsters never overlap
    assert len({u["due_ns"] for u in units}) == len(units)  # an open workload: arrivals


def test_verify_counts_missing_wrong_and_unexpected_thumbnails(tmp_path):
    mod = load("thumbnails").module
    ctx = Context("thumbnails", params(), data_dir=tmp_path, run_id="r", cell_id="c")
    folder = mod.dataset(ctx)
    out = folder / mod._out_dir(ctx)
    out.mkdir(parents=True)
    manifest = [{"name": f"img/{i:05d}.jpg", "size": [100, 60], "bytes": 1} for i in range(3)]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    Image.new("RGB", mod.expected_size((100, 60), 32)).save(out / "00000.jpg")
    Image.new("RGB", (32, 32)).save(out / "00001.jpg")      # wrong size; 00002 is missing
    Image.new("RGB", (8, 8)).save(out / "stray.jpg")         # not asked for
    (check,) = mod.verify(ctx)
    assert (check.ok, check.actual, check.metric) == (False, 3, "bad_thumbnails")
    assert mod.expected_size((100, 60), 32) == (32, 19)
