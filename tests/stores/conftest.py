"""The store suite runs every test twice: on SQLite and on PostgreSQL.

PostgreSQL is the one on 127.0.0.1:5432 (trust auth, user postgres); each test
gets fresh databases `lipsync_test_<random>`, dropped afterwards. When that
server cannot be reached, the PostgreSQL half is skipped, not failed, so the
default run needs nothing but SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.stores.postgres import UNREACHABLE, PostgresDatabases, postgres_reachable


@pytest.fixture(params=["sqlite", "postgres"])
def new_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases of the parametrised kind."""
    if request.param == "sqlite":
        counter = iter(range(1_000_000))
        yield lambda: f"sqlite:///{tmp_path / f'store-{next(counter)}.db'}"
        return
    if not postgres_reachable():
        pytest.skip(UNREACHABLE)
    databases = PostgresDatabases()
    try:
        yield databases.create
    finally:
        databases.drop_all()


@pytest.fixture
def database_url(new_database_url: Callable[[], str]) -> str:
    """One fresh, empty database: `sqlite:///...` or `postgresql://...`."""
    return new_database_url()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql://")
