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


@pytest.fixture
def schema(postgres):
    """A fresh schema with the csv_ingest tables (harness.workloads.csvtables), dropped after."""
    import os

    from harness.services.postgres import connect
    from harness.workloads.csvtables import ddl

    name = f"csv_test_{os.getpid()}"
    with connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"SET search_path TO {name}")
        conn.execute(ddl())
    yield name
    with connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
