"""thumbnails: throughput against p99; images on shared storage with a few monster files.

Images (JPEG, made once with Pillow and numpy and cached) have heavy-tailed sizes:
lognormal sides around ``side_px``, plus ``monsters`` files of ``monster_px`` a side. They
sit on the NFS-like volume (the FUSE service: ``nas_latency_ms`` per operation and
``nas_slots`` operations served at once, so concurrent readers queue as on a real NAS).
Each unit reads one image through the volume, makes a ``thumb_px`` thumbnail with Pillow
and writes it back to the volume. Images arrive at ``rate`` per second (an open workload,
``schedule``; 0 = a batch at t0), so a unit's latency counts from its arrival.

More workers finish the batch sooner, but every worker past the volume's slots only
lengthens the queue at the volume, and a monster file is many operations: its latency
grows with the queue, and small files arriving behind busy workers wait. The hybrid to
compare is the size-aware policy ``lanes`` (``threads+lanes(1,big)``): monster files,
``group="big"``, run in a lane of their own and never take the small files' workers.

``verify`` opens every thumbnail and checks its exact size (Pillow's thumbnail rule on
the source's size) and that nothing else was written; ``bound`` is the volume's floor:
every image needs at least an open and a read served by one of its slots.
"""

from __future__ import annotations

import io
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.scenario import Check, Context, Metric, Param, Unit, UnitResult

NAME = "thumbnails"
DESCRIPTION = "Pillow thumbnails of heavy-tailed images on the NFS-like volume: p99 behind monsters"
SERVICES = ("nas",)
PARAMS = (
    Param("images", 60, "images (units), monsters included", minimum=1),
    Param("monsters", 3, "monster files among them", minimum=0),
    Param("side_px", 320, "median side of an ordinary image in pixels", minimum=16),
    Param("sigma", 0.5, "lognormal sigma of ordinary sides", minimum=0.0),
    Param("monster_px", 2400, "side of a monster file in pixels", minimum=16),
    Param("thumb_px", 128, "thumbnail bounding box in pixels", minimum=8),
    Param("rate", 0.0, "arrivals per second (0 = a batch at t0)", minimum=0.0, type=float),
    Param("nas_latency_ms", 2.0, "volume: delay per filesystem operation", minimum=0.0),
    Param("nas_slots", 4, "volume: operations served at once", minimum=1),
    Param("seed", 1, "seed of sizes and pixels"),
)
METRICS = (Metric("bad_thumbnails", "files",
                  help="thumbnails missing, of the wrong size, or unexpected"),)
BIG = "big"  # the group of monster files: the lanes policy's heavy lane


def _image() -> Any:
    """Pillow's Image module, imported lazily (a heavy import) with an install hint."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("thumbnails needs Pillow: pip install Pillow") from exc
    return Image


def _sizes(p: dict[str, Any]) -> list[tuple[int, int]]:
    """(width, height) per image; monsters spread evenly through the list."""
    rng = random.Random(p["seed"])
    sizes = []
    for _ in range(p["images"]):
        side = p["side_px"] * math.exp(rng.gauss(0.0, p["sigma"]))
        sizes.append((max(16, int(side)), max(16, int(side * rng.uniform(0.6, 1.0)))))
    step = p["images"] / max(1, p["monsters"])
    for k in range(min(p["monsters"], p["images"])):
        sizes[int(step * k + step / 2)] = (p["monster_px"], p["monster_px"] * 3 // 4)
    return sizes


def dataset(ctx: Context) -> Path:
    p = ctx.params
    key = "-".join(str(p[k]) for k in ("images", "monsters", "side_px", "sigma", "monster_px",
                                       "seed"))
    return ctx.data_dir / f"images-{key}"


def prepare(ctx: Context) -> None:
    """Generate the images once (cached under data_dir): smooth gradients plus noise, so a
    JPEG's bytes grow with its pixels as a photo's do."""
    import numpy as np

    Image = _image()

    folder = dataset(ctx)
    if (folder / "manifest.json").exists():
        return
    started = time.perf_counter()
    tmp = folder.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "img").mkdir(parents=True)
    rng = np.random.default_rng(ctx.params["seed"])
    manifest = []
    for i, (w, h) in enumerate(_sizes(ctx.params)):
        y, x = np.mgrid[0:h, 0:w]
        base = (x * 255 // max(1, w - 1) + y * 255 // max(1, h - 1)) // 2
        pixels = np.clip(base[..., None] + rng.integers(-40, 40, (h, w, 3)), 0, 255)
        name = f"img/{i:05d}.jpg"
        Image.fromarray(pixels.astype("uint8"), "RGB").save(tmp / name, quality=85)
        manifest.append({"name": name, "size": [w, h], "bytes": (tmp / name).stat().st_size})
    (tmp / "thumbs").mkdir()
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    tmp.rename(folder)
    total = sum(m["bytes"] for m in manifest) / 2**20
    print(f"data: {len(manifest)} images, {total:.1f} MiB, generated in "
          f"{time.perf_counter() - started:.1f} s in {folder}", file=sys.stderr)


def service_config(ctx: Context) -> dict[str, dict[str, Any]]:
    # The mountpoint lives outside the run's scratch folder (that one is removed
    # recursively after the run, which must never walk into a mounted volume).
    mountpoint = ctx.data_dir.parents[1] / "mnt" / f"{NAME}-{ctx.run_id}"
    return {"nas": {"backing": dataset(ctx), "mountpoint": mountpoint,
                    "latency_ms": ctx.params["nas_latency_ms"], "slots": ctx.params["nas_slots"],
                    "max_threads": 64}}


def _manifest(ctx: Context) -> list[dict[str, Any]]:
    return json.loads((dataset(ctx) / "manifest.json").read_text())


def units(ctx: Context) -> list[Unit]:
    monster = ctx.params["monster_px"]
    return [Unit(id=m["name"], group=BIG if m["size"][0] == monster else "small",
                 payload=m["bytes"]) for m in _manifest(ctx)]


def schedule(ctx: Context, units: list[Unit]) -> list[float]:
    rate = ctx.params["rate"]
    return [i / rate if rate else 0.0 for i in range(len(units))]


def _out_dir(ctx: Context) -> str:
    return f"thumbs/{ctx.run_id}/{ctx.cell_id}"


def reset(ctx: Context) -> None:
    folder = dataset(ctx) / _out_dir(ctx)  # on the backing folder: no volume latency
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def work(unit: Unit, ctx: Context) -> UnitResult:
    Image = _image()
    volume = Path(ctx.services["nas"]["path"])
    data = (volume / unit.id).read_bytes()  # through the volume: every chunk is an operation
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((ctx.params["thumb_px"],) * 2)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
    target = volume / _out_dir(ctx) / Path(unit.id).name
    target.write_bytes(out.getvalue())
    return UnitResult(rows=1, bytes=len(data))


def expected_size(size: tuple[int, int], box: int) -> tuple[int, int]:
    """Pillow's thumbnail size for ``size`` in a ``box`` square (computed, not assumed)."""
    probe = _image().new("1", tuple(size))
    probe.thumbnail((box, box))
    return probe.size


def verify(ctx: Context) -> list[Check]:
    Image = _image()
    folder = dataset(ctx) / _out_dir(ctx)
    box = ctx.params["thumb_px"]
    expected = {Path(m["name"]).name: expected_size(m["size"], box) for m in _manifest(ctx)}
    found = {p.name: p for p in folder.iterdir()} if folder.is_dir() else {}
    bad = wrong = 0
    for name, size in expected.items():
        if name not in found:
            bad += 1
            continue
        with Image.open(found[name]) as thumb:
            if thumb.size != size:
                bad, wrong = bad + 1, wrong + 1
    extra = len(found.keys() - expected.keys())
    return [Check("every thumbnail written at its exact size", 0, bad + extra,
                  bad + extra == 0, f"{len(found)} files for {len(expected)} images, "
                  f"{wrong} of the wrong size, {extra} unexpected", metric="bad_thumbnails")]


def bound(ctx: Context, executor: str) -> float:
    """The volume's floor: each image needs at least two served operations (open, read),
    ``nas_slots`` at a time, after its arrival. None without the FUSE volume."""
    p = ctx.params
    if not ctx.services.get("nas", {}).get("available", False):
        return None
    op = p["nas_latency_ms"] / 1000
    n = p["images"]
    last_arrival = (n - 1) / p["rate"] if p["rate"] else 0.0
    return max(2 * n * op / p["nas_slots"], last_arrival + 2 * op)


def teardown(ctx: Context) -> None:
    shutil.rmtree(dataset(ctx) / "thumbs" / ctx.run_id, ignore_errors=True)
