"""Shared fixtures. Tests that need PostgreSQL are marked ``db`` and take the ``postgres`` fixture."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: needs PostgreSQL (DATABASE_URL if set, else the embedded pgserver)")


@pytest.fixture(scope="session")
def postgres():
    """PostgresInfo of this session's server: DATABASE_URL if set, else the embedded server under
    the project's .harness/pg, stopped when the session ends."""
    from harness.services.postgres import PostgresService

    service = PostgresService()
    info = service.start()
    yield info
    service.stop()
