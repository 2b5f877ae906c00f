"""Typed run configuration: the CLI parses arguments into this at the edge."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.modes import ERROR_POLICIES, ModeOptions, ModeSpec


class ConfigError(ValueError):
    """A command-line value is wrong; the message names the option."""


@dataclass
class RunConfig:
    """Everything ``harness run`` needs; stored verbatim in run.json."""

    scenario: str
    modes: list[str] = field(default_factory=list)  # empty: every available mode
    workers: dict[str, int] = field(default_factory=dict)  # "*" for all, or per mode
    repeat: int = 3
    warmup: bool = True
    params: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 600.0
    max_memory_mb: float | None = None
    sample_hz: float = 10.0
    on_error: str = "continue"
    group_cap: int = 3
    stagger_s: float = 0.2
    chunksize: int | None = None
    dask_address: str | None = None
    out: Path = Path("results")
    progress: bool = True
    budgets: dict[str, Any] = field(default_factory=dict)  # verdict inputs, kept in run.json

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise ConfigError(f"--repeat {self.repeat}: must be at least 1")
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout {self.timeout_s}: must be positive")
        if self.max_memory_mb is not None and self.max_memory_mb <= 0:
            raise ConfigError(f"--max-memory {self.max_memory_mb}: must be positive")
        if not 0 <= self.sample_hz <= 1000:
            raise ConfigError(f"--sample-hz {self.sample_hz}: must be between 0 and 1000")
        if self.on_error not in ERROR_POLICIES:
            raise ConfigError(f"--on-error {self.on_error}: must be one of {', '.join(ERROR_POLICIES)}")
        if self.group_cap < 1:
            raise ConfigError(f"--group-cap {self.group_cap}: must be at least 1")
        if self.stagger_s < 0:
            raise ConfigError(f"--stagger {self.stagger_s}: must not be negative")
        if self.chunksize is not None and self.chunksize < 1:
            raise ConfigError(f"--chunksize {self.chunksize}: must be at least 1")
        for mode, n in self.workers.items():
            if n < 1:
                raise ConfigError(f"--workers {mode}={n}: must be at least 1")

    def workers_for(self, mode: str, default: int | None) -> int:
        """--workers for a mode spec: by the spec as written (``grouped``,
        ``threads+interleave``), else by its executor (``threads``), else ``*``."""
        executor = ModeSpec.parse(mode).executor
        for key in (mode, executor, "*"):
            if key in self.workers:
                return self.workers[key]
        return default or 1

    def mode_options(self, mode: str, default_workers: int | None) -> ModeOptions:
        return ModeOptions(workers=self.workers_for(mode, default_workers),
                           on_error=self.on_error, group_cap=self.group_cap,
                           stagger_s=self.stagger_s, chunksize=self.chunksize,
                           dask_address=self.dask_address)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def parse_params(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` to a dict; a missing ``=`` is an error naming the item."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected key=value")
        params[key.strip()] = value.strip()
    return params


def parse_workers(text: str | None) -> dict[str, int]:
    """``"8"`` (every mode) or ``"threads=16,processes=2"`` (per mode)."""
    if not text:
        return {}
    result: dict[str, int] = {}
    for part in text.split(","):
        mode, sep, value = part.rpartition("=")
        try:
            result[mode.strip() if sep else "*"] = int(value)
        except ValueError:
            raise ConfigError(f"--workers {text!r}: expected N or mode=N,mode=N") from None
    return result
