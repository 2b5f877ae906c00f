"""The plan of a run: scenario x mode x repeat, interleaved, plus one warm-up cell."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedCell:
    index: int
    mode: str
    repeat: int      # 0-based; -1 for the warm-up cell
    warmup: bool

    @property
    def cell_id(self) -> str:
        tag = "warmup" if self.warmup else f"r{self.repeat + 1}"
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.mode).strip("_")  # a folder name
        return f"{self.index:03d}-{slug}-{tag}"


def make_plan(modes: list[str], repeat: int, warmup: bool = True) -> list[PlannedCell]:
    """Interleave modes across repeats (rotating the order each round) so slow drift of the
    machine (thermal, caches, a neighbour's load) spreads over every mode instead of
    landing on whichever ran last. The warm-up cell runs the first mode and is recorded
    but not counted."""
    cells: list[PlannedCell] = []
    if warmup and modes:
        cells.append(PlannedCell(0, modes[0], -1, True))
    for r in range(repeat):
        shift = r % len(modes) if modes else 0
        for mode in modes[shift:] + modes[:shift]:
            cells.append(PlannedCell(len(cells), mode, r, False))
    return cells
