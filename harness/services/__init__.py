"""Real services the scenarios run against: PostgreSQL (DATABASE_URL or embedded pgserver), the
supplier HTTP endpoints (aiohttp, per-supplier token buckets) and the NFS-like FUSE volume.

The harness starts and stops them; a scenario only receives their addresses through its context.
Heavy modules (pgserver, mfusepy, aiohttp) are imported by the submodules, not here.
"""

from harness.services.errors import ServiceError

__all__ = ["ServiceError"]
