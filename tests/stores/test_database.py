"""`lipsync_common.db.Database` and its migrations behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from lipsync_common.db import Database, database_url
from lipsync_common.migrations import Migration, MigrationStep

MIGRATIONS: list[MigrationStep] = [
    """
    CREATE TABLE things (
        name TEXT NOT NULL UNIQUE,
        weight DOUBLE PRECISION,
        hits BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX things_heavy ON things (weight) WHERE weight IS NOT NULL
    """,
    Migration(
        sqlite="CREATE VIEW thing_names AS SELECT name FROM things",
        postgres="CREATE VIEW thing_names AS SELECT name::text AS name FROM things",
    ),
]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, MIGRATIONS)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def insert(conn: Connection, name: str, weight: float | None = None) -> None:
    conn.execute(
        text("INSERT INTO things (name, weight) VALUES (:name, :weight)"),
        {"name": name, "weight": weight},
    )


def names(conn: Connection) -> list[str]:
    return list(conn.execute(text("SELECT name FROM thing_names ORDER BY name")).scalars())


def test_settings_urls_pick_the_driver_and_the_pool_size() -> None:
    url, size = database_url("postgresql://u:p@db:5432/jobs?pool_size=9&sslmode=require")
    assert url.drivername == "postgresql+psycopg" and size == 9
    assert dict(url.query) == {"sslmode": "require"} and url.database == "jobs"
    assert database_url("postgres://db/jobs")[0].drivername == "postgresql+psycopg"
    url, size = database_url("sqlite:///var/jobs.db")
    assert url.drivername == "sqlite" and url.database == "var/jobs.db" and size is None
    with pytest.raises(ValueError, match="unsupported"):
        database_url("mysql://db/jobs")


async def test_callbacks_run_off_the_event_loop_thread(db: Database) -> None:
    loop_thread = threading.get_ident()
    assert await db.run(lambda conn: threading.get_ident()) != loop_thread
    assert await db.transaction(lambda conn: threading.get_ident()) != loop_thread


async def test_a_constraint_violation_is_an_integrity_error(db: Database) -> None:
    await db.run(lambda conn: insert(conn, "a"))
    with pytest.raises(IntegrityError):
        await db.transaction(lambda conn: insert(conn, "a"))


async def test_a_failed_transaction_leaves_nothing_behind(db: Database) -> None:
    def half(conn: Connection) -> None:
        insert(conn, "kept-out")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.transaction(half)
    assert await db.run(names) == []


async def test_concurrent_increments_are_not_lost(database_url: str) -> None:
    """Read-modify-write transactions stay correct with several connections.

    On PostgreSQL they collide as serialization failures and are re-run.
    """
    databases = [Database(database_url, MIGRATIONS) for _ in range(3)]
    for database in databases:
        await database.open()
    try:
        await databases[0].run(lambda conn: insert(conn, "counter"))
        hits = text("SELECT hits FROM things WHERE name = 'counter'")

        def increment(conn: Connection) -> None:
            value = conn.execute(hits).scalar_one()
            conn.execute(
                text("UPDATE things SET hits = :hits WHERE name = 'counter'"), {"hits": value + 1}
            )

        await asyncio.gather(*(databases[i % 3].transaction(increment) for i in range(60)))
        assert await databases[0].run(lambda conn: conn.execute(hits).scalar_one()) == 60
    finally:
        for database in databases:
            await database.close()


async def test_migrations_apply_once_across_restarts_and_simultaneous_starts(
    database_url: str,
) -> None:
    # Several replicas starting at once on an empty database.
    replicas = [Database(database_url, MIGRATIONS) for _ in range(3)]
    await asyncio.gather(*(replica.open() for replica in replicas))
    await replicas[0].run(lambda conn: insert(conn, "survivor"))
    for replica in replicas:
        await replica.close()

    # A restart with one more migration applies only that one.
    grown = Database(database_url, [*MIGRATIONS, "ALTER TABLE things ADD COLUMN note TEXT"])
    await grown.open()
    try:
        versions = await grown.run(
            lambda conn: list(
                conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars()
            )
        )
        assert versions == [1, 2, 3]
        assert await grown.run(names) == ["survivor"]
    finally:
        await grown.close()


async def test_a_failing_migration_applies_nothing(database_url: str) -> None:
    broken = Database(database_url, [*MIGRATIONS, "ALTER TABLE no_such_table ADD COLUMN x TEXT"])
    with pytest.raises(DBAPIError, match="no_such_table"):
        await broken.open()
    await broken.close()
    fine = Database(database_url, MIGRATIONS)
    await fine.open()
    try:
        assert await fine.run(names) == []
    finally:
        await fine.close()
