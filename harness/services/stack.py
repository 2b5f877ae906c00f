"""Start the services a scenario needs, hand their details to its context, stop them after.

Two phases, because data services serve what ``prepare`` generates: ``postgres`` starts
before ``prepare``; ``suppliers`` and ``nas`` start after it, configured by the scenario's
``service_config(ctx)``. Everything started here is stopped on exit, including on Ctrl-C
or an exception, so a run never leaves a server or a mount behind.
"""

from __future__ import annotations

import contextlib
import os
import urllib.request
from pathlib import Path
from typing import Any, Callable

KNOWN_SERVICES = ("postgres", "suppliers", "nas")


class ServiceStack(contextlib.ExitStack):
    """An ExitStack that knows how to start each named service."""

    def __init__(self, state_dir: Path, say: Callable[[str], None] = print):
        super().__init__()
        self.state_dir = Path(state_dir)
        self.say = say
        self.details: dict[str, dict[str, Any]] = {}   # goes into ctx.services
        self.pids: dict[str, list[int]] = {}           # sampled as separate series
        self.versions: dict[str, Any] = {}             # recorded in run.json
        self.handles: dict[str, Any] = {}
        self.containers: dict[str, Any] = {}           # sampled through the Docker engine
        self.noticed: list[tuple[str, str, str]] = []  # (service, event, detail) seen by checks

    def start_postgres(self) -> None:
        from harness.services.postgres import PostgresService

        service = PostgresService(data_dir=self.state_dir / "pg")
        info = service.start()
        self.callback(service.stop)
        self.handles["postgres"] = service
        self.say(f"PostgreSQL {info.version}: {info.source}")
        self.details["postgres"] = {"dsn": info.dsn, "version": info.version,
                                    "embedded": info.embedded}
        self.pids["postgres"] = list(info.pids)
        self.versions["postgres"] = {"version": info.version, "source": info.source,
                                     "settings": info.settings}
        if not info.pids:
            # Not a process we can see: maybe a container (make up) the engine can report on.
            from harness.services.container_stats import find_container

            container = find_container(info.dsn)
            if container is not None:
                self.containers["postgres"] = container
                self.versions["postgres"]["container"] = container.name
                self.say(f"PostgreSQL runs in container {container.name}: sampling its stats")

    # ---- health (the runner checks every service between cells, the parent during one) ----

    def alive(self, name: str) -> bool | None:
        """Cheap liveness, no request: the service's process runs (None: cannot tell)."""
        handle = self.handles.get(name)
        if handle is None:
            return None
        if name == "postgres":
            return handle.alive()
        proc = getattr(handle, "_proc", None)
        if proc is None or proc.poll() is not None:
            return False
        if name == "nas":
            from harness.services.nas import mount_entry

            return mount_entry(handle.mountpoint) is not None
        return True

    def answers(self, name: str) -> str | None:
        """None when the service serves a request now, else why not (one line)."""
        handle = self.handles.get(name)
        if handle is None:
            return None  # not started by us (or a local folder instead of a volume)
        if name == "postgres":
            reason = handle.answers()
            pids = list(handle.info.pids) if handle.info is not None else []
            if reason is None and pids != self.pids.get("postgres"):
                # Restarted from outside (pg_ctl restart): sample, and at the end stop,
                # the postmaster that runs now; the runner records what happened.
                self.noticed.append(("postgres", "restarted from outside",
                                     f"postmaster pid {self.pids.get('postgres')} -> {pids}"))
                self.pids["postgres"] = pids
            return reason
        if not self.alive(name):
            return f"its process (pid {handle.pid}) is gone"
        try:
            if name == "suppliers":
                urllib.request.urlopen(f"{handle.base_url}/health", timeout=2).close()
            elif name == "nas":
                os.listdir(handle.mountpoint)
        except OSError as exc:
            return f"does not answer ({exc})"
        return None

    def revive(self, name: str) -> None:
        """Start a dead service again where the harness owns it; ServiceError otherwise."""
        from harness.services.errors import ServiceError

        handle = self.handles.get(name)
        if name == "postgres":
            info = handle.revive()
            self.details["postgres"]["dsn"] = info.dsn
            self.pids["postgres"] = list(info.pids)
        elif name == "suppliers":
            handle.stop()
            self.details["suppliers"]["base_url"] = handle.start()
            self.pids["suppliers"] = [handle.pid]
        elif name == "nas":
            handle.unmount()
            handle.mount()
            self.pids["nas"] = [handle.pid]
        else:
            raise ServiceError(f"{name} cannot be restarted by the harness")

    def start_suppliers(self, **kwargs: Any) -> None:
        from harness.services.suppliers import SupplierServer

        server = SupplierServer(**kwargs)
        base_url = server.start()
        self.callback(server.stop)
        self.handles["suppliers"] = server
        self.say(f"supplier endpoints: {base_url} (pid {server.pid})")
        self.details["suppliers"] = {"base_url": base_url,
                                     **{k: v for k, v in kwargs.items() if k != "data_dir"}}
        self.pids["suppliers"] = [server.pid]
        self.versions["suppliers"] = {"aiohttp": server.version(), **self.details["suppliers"]}

    def start_nas(self, backing: Path, mountpoint: Path, **kwargs: Any) -> None:
        from harness.services.nas import NasVolume, fuse_available

        ok, reason = fuse_available()
        if not ok:
            self.say(f"NFS-like volume unavailable ({reason}); reading the local folder instead")
            self.details["nas"] = {"available": False, "kind": "local", "reason": reason,
                                   "path": str(backing)}
            self.versions["nas"] = self.details["nas"]
            return
        volume = NasVolume(Path(backing), Path(mountpoint), **kwargs)
        self.callback(_rmdir_quiet, Path(mountpoint))  # after the unmount (LIFO): an empty
        path = volume.mount()                          # mountpoint is a leftover too
        self.callback(volume.unmount)
        self.handles["nas"] = volume
        self.say(f"NFS-like volume mounted at {path} (pid {volume.pid})")
        self.details["nas"] = {"available": True, "kind": "fuse", "path": str(path), **kwargs}
        self.pids["nas"] = [volume.pid]
        self.versions["nas"] = dict(self.details["nas"])

    def start(self, name: str, config: dict[str, Any]) -> None:
        """Start one named service with the scenario's configuration for it."""
        if name == "postgres":
            self.start_postgres()
        elif name == "suppliers":
            self.start_suppliers(**config)
        elif name == "nas":
            self.start_nas(**config)
        else:
            raise ValueError(f"unknown service {name!r} (known: {', '.join(KNOWN_SERVICES)})")


def _rmdir_quiet(path: Path) -> None:
    try:
        path.rmdir()  # refused when not empty or still mounted: then it is not ours to remove
    except OSError:
        pass
