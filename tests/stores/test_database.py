"""`lipsync_common.db.Database` behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lipsync_common.db import Connection, Database, IntegrityError, Migration

MIGRATIONS: list[str | Migration] = [
    """
    CREATE TABLE things (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        weight REAL,
        payload BLOB,
        hits INTEGER NOT NULL DEFAULT 0
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


def insert(conn: Connection, name: str, weight: float | None = None) -> int:
    row = conn.execute(
        "INSERT INTO things (name, weight, payload) VALUES (?, ?, ?) RETURNING id",
        (name, weight, b"\x00\xffbytes"),
    ).fetchone()
    return int(row["id"])


async def test_rows_read_by_name_and_position_with_sqlite_types(db: Database) -> None:
    first = await db.run(lambda conn: insert(conn, "a", 1.5))
    second = await db.run(lambda conn: insert(conn, "b"))
    assert second > first
    row = await db.run(lambda conn: conn.execute("SELECT * FROM things WHERE id = ?", (first,)))
    row = row.fetchone()
    assert row["name"] == row[1] == "a"
    assert row["weight"] == 1.5
    assert bytes(row["payload"]) == b"\x00\xffbytes"
    assert row["hits"] == 0 and isinstance(row["hits"], int)
    assert row.keys() == ["id", "name", "weight", "payload", "hits"]


async def test_sums_are_integers_and_bools_are_stored_as_integers(db: Database) -> None:
    await db.run(lambda conn: insert(conn, "a"))
    await db.run(
        lambda conn: conn.execute("UPDATE things SET hits = ? WHERE name = ?", (True, "a"))
    )
    row = await db.run(lambda conn: conn.execute("SELECT SUM(hits) AS total FROM things"))
    total = row.fetchone()["total"]
    assert total == 1 and isinstance(total, int)


async def test_named_parameters_literal_percent_and_question_marks(db: Database) -> None:
    await db.run(lambda conn: insert(conn, "50% off?"))
    rows = await db.run(
        lambda conn: conn.execute(
            "SELECT name, '?' AS mark FROM things WHERE name LIKE '50%' AND name = :name",
            {"name": "50% off?"},
        ).fetchall()
    )
    assert [(r["name"], r["mark"]) for r in rows] == [("50% off?", "?")]


async def test_statements_without_rows_fetch_nothing_and_count_rows(db: Database) -> None:
    await db.run(lambda conn: insert(conn, "a"))
    cursor = await db.run(lambda conn: conn.execute("UPDATE things SET hits = hits + 1"))
    assert cursor.rowcount == 1
    assert cursor.fetchone() is None
    assert cursor.fetchall() == []


async def test_greatest_and_least_on_both(db: Database) -> None:
    row = await db.run(
        lambda conn: conn.execute(
            "SELECT GREATEST(hits, ?) AS hi, LEAST(hits, ?) AS lo FROM things"
            " UNION ALL SELECT GREATEST(2, 5), LEAST(2, 5)",
            (3, 3),
        ).fetchall()
    )
    assert [(r["hi"], r["lo"]) for r in row] == [(5, 2)]


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
    rows = await db.run(lambda conn: conn.execute("SELECT * FROM things").fetchall())
    assert rows == []


async def test_concurrent_increments_are_not_lost(database_url: str) -> None:
    """Read-modify-write transactions stay correct with several connections."""
    databases = [Database(database_url, MIGRATIONS) for _ in range(3)]
    for database in databases:
        await database.open()
    try:
        await databases[0].run(lambda conn: insert(conn, "counter"))

        def increment(conn: Connection) -> None:
            hits = conn.execute("SELECT hits FROM things WHERE name = 'counter'").fetchone()[0]
            conn.execute("UPDATE things SET hits = ? WHERE name = 'counter'", (hits + 1,))

        await asyncio.gather(*(databases[i % 3].transaction(increment) for i in range(60)))
        row = await databases[0].run(
            lambda conn: conn.execute("SELECT hits FROM things WHERE name = 'counter'").fetchone()
        )
        assert row["hits"] == 60
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
            lambda conn: [
                r["version"]
                for r in conn.execute(
                    "SELECT version FROM schema_version ORDER BY version"
                ).fetchall()
            ]
        )
        assert versions == [1, 2, 3]
        names = await grown.run(
            lambda conn: [
                r["name"] for r in conn.execute("SELECT name FROM thing_names").fetchall()
            ]
        )
        assert names == ["survivor"]
    finally:
        await grown.close()
