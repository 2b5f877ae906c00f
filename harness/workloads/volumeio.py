"""The pipeline's own traffic on the NAS volume: staging downloads and writing output back.

As in the article, a fetched file is staged on the volume (written, then read back) and each
file's processed output is flushed to its supplier's output file on the volume before the
file is committed, so writes queue behind reads on the same server, and many handlers of one
supplier writing at once hold many handles on one file (EBUSY past the volume's limit).
Everything lives under ``<volume>/.harness-out/<cell>/``, removed through the backing folder
(never through the mount) before each cell and at the end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OUT_DIR = ".harness-out"


def out_root(volume: Path | str, cell_id: str) -> Path:
    return Path(volume) / OUT_DIR / cell_id


def reset(backing: Path, cell_id: str, suppliers: list[str]) -> None:
    """A fresh output folder for the cell (outside the measured window), with one staging
    folder per supplier so no unit pays for a mkdir through the volume."""
    shutil.rmtree(Path(backing) / OUT_DIR, ignore_errors=True)
    for supplier in suppliers:
        (out_root(backing, cell_id) / "staged" / supplier).mkdir(parents=True, exist_ok=True)


def remove(backing: Path) -> None:
    shutil.rmtree(Path(backing) / OUT_DIR, ignore_errors=True)


def stage(volume: Path | str, cell_id: str, unit_id: str, data: bytes) -> bytes:
    """Write a downloaded file to the volume and read it back (what the loader reads)."""
    path = out_root(volume, cell_id) / "staged" / unit_id
    path.parent.mkdir(parents=True, exist_ok=True)  # hand-made layouts: folders not made ahead
    with open(path, "wb") as fh:
        fh.write(data)
    with open(path, "rb") as fh:
        return fh.read()


def write_back(volume: Path | str, cell_id: str, supplier: str, data: bytes) -> None:
    """Append a file's processed output to its supplier's output file and flush it to the
    server (fsync: the article's fix flushed each file to disk)."""
    with open(out_root(volume, cell_id) / f"{supplier}.out", "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
