"""Mounts of the NFS-like volume in /proc/self/mounts: finding one (even with a dead daemon),
unmounting it, and clearing a stale one of ours left by a crashed run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.services.errors import ServiceError

FSNAME = "harness-nas"  # the mount's source in /proc/mounts: how a stale mount of ours is recognised


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_entry(mountpoint: Path) -> tuple[str, str] | None:
    """(source, fstype) of what is mounted at ``mountpoint``, or None. Reads /proc/self/mounts, not
    stat(): a mount whose daemon died answers stat() with ENOTCONN, so os.path.ismount says False."""
    target = str(Path(mountpoint).absolute())
    found = None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 3 and _unescape(fields[1]) == target:
                    found = (_unescape(fields[0]), fields[2])  # the last entry is the visible one
    except OSError:
        return None
    return found


def _run_quiet(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def force_unmount(mountpoint: Path) -> bool:
    """Unmount ``mountpoint``: fusermount3 -u, then lazy (-uz, umount -l) if it is busy or dead.
    Returns True when nothing is mounted there afterwards."""
    for cmd in (["fusermount3", "-u"], ["fusermount3", "-uz"], ["umount", "-l"]):
        if mount_entry(mountpoint) is None:
            return True
        _run_quiet([*cmd, str(mountpoint)])
    return mount_entry(mountpoint) is None


def _clear_stale_mount(mountpoint: Path) -> None:
    entry = mount_entry(mountpoint)
    if entry is None:
        return
    source, fstype = entry
    if source != FSNAME:
        raise ServiceError(f"{mountpoint} already has a {fstype} mount from {source}; unmount it or choose another mountpoint")
    if not force_unmount(mountpoint):  # a volume of ours left by a crashed run
        raise ServiceError(f"a stale volume at {mountpoint} cannot be unmounted; run: fusermount3 -uz {mountpoint}")
