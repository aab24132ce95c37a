"""The services' stores on SQLite (the default) or PostgreSQL, behind one API.

`Database(url, migrations)` picks the engine from the URL: `sqlite:///path` or
`postgresql://...` (see `db_postgres`). Stores hand it callbacks `fn(conn)`
that run on a database thread; `conn.execute(sql, params)` takes SQLite's SQL
with `?` placeholders on both engines and returns a cursor whose rows read by
name or position. Portable SQL, in short: GREATEST/LEAST rather than SQLite's
two-argument MAX/MIN (SQLite gets both functions here), RETURNING rather than
`lastrowid`, ON CONFLICT for upserts, aliases for computed columns (`SUM(x) AS
total`), and an IntegrityError ends the transaction (PostgreSQL aborts it).
Integers come back as int and NUMERIC sums as int, as on SQLite.

SQLite: one connection driven by one dedicated thread, so the event loop never
blocks, and the single writer makes `BEGIN IMMEDIATE` transactions serialise
cleanly without "database is locked" retries inside one process. Several
processes may still share a file; the busy timeout covers that.

Migrations are a list per store, applied in order once each and recorded in a
`schema_version` table. A migration is SQLite DDL, translated mechanically for
PostgreSQL, or a `Migration(sqlite=..., postgres=...)` pair where it cannot be.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Raised on both engines for a violated constraint (PostgreSQL's is translated).
IntegrityError = sqlite3.IntegrityError


class Row(Protocol):
    """A result row: `row["column"]` or `row[0]` (sqlite3.Row or its PostgreSQL twin)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What a store callback may use, on either engine."""

    def execute(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ..., /
    ) -> Cursor: ...


@dataclass(frozen=True)
class Migration:
    """One migration written per dialect, for what no mechanical translation covers."""

    sqlite: str
    postgres: str


MigrationStep = str | Migration


def sqlite_path(url: str) -> str:
    """`sqlite:///abs/path.db` or `sqlite:///:memory:` to a sqlite3 path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")
    return url[len(prefix) :]


def dialect_of(url: str) -> str:
    return "postgres" if url.startswith(("postgresql://", "postgres://")) else "sqlite"


def _statements(script: str) -> list[str]:
    """Split a migration into statements; a trigger body's `;` does not split."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def _greatest(*values: Any) -> Any:
    # Like PostgreSQL: NULLs are ignored, NULL only when every value is.
    return max((v for v in values if v is not None), default=None)


def _least(*values: Any) -> Any:
    return min((v for v in values if v is not None), default=None)


def _enable_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch the file to WAL; retried, because SQLite answers "database is locked" at once,
    without waiting out the busy timeout, to a process that switches while another one is
    doing the same (replicas starting together on a new file)."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class _SqliteBackend:
    """A SQLite connection driven from a single worker thread."""

    dialect = "sqlite"

    def __init__(self, url: str, migrations: Sequence[MigrationStep]) -> None:
        self._path = sqlite_path(url)
        self._migrations = migrations
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    def _open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.row_factory = sqlite3.Row
        _enable_wal(conn)
        conn.execute("PRAGMA foreign_keys=ON")
        # PostgreSQL's names for the multi-argument MAX and MIN, so one query serves both.
        conn.create_function("GREATEST", -1, _greatest, deterministic=True)
        conn.create_function("LEAST", -1, _least, deterministic=True)
        self._conn = conn
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read under the write lock: two processes opening one file at once
            # must not both apply the same migration.
            current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            for version, migration in enumerate(self._migrations, start=1):
                if version <= current:
                    continue
                script = migration if isinstance(migration, str) else migration.sqlite
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def run(self, fn: Callable[[Any], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[Any], T]) -> T:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return fn(self._conn)

    async def transaction(self, fn: Callable[[Any], T]) -> T:
        def wrapped(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(wrapped)

    async def close(self) -> None:
        if self._conn is not None:
            await self.run(lambda conn: conn.close())
            self._conn = None
        self._executor.shutdown(wait=True)


class Database:
    """A store's database: SQLite or PostgreSQL by URL, with its migrations applied."""

    def __init__(
        self, url: str, migrations: Sequence[MigrationStep], *, pool_size: int | None = None
    ) -> None:
        self.dialect = dialect_of(url)
        self._backend: Any
        if self.dialect == "postgres":
            # Imported here so the SQLite default runs without psycopg installed.
            from lipsync_common.db_postgres import PostgresBackend

            self._backend = PostgresBackend(url, migrations, pool_size)
        else:
            self._backend = _SqliteBackend(url, migrations)

    async def open(self) -> None:
        """Connect and apply the pending migrations."""
        await self._backend.open()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` on a database thread, each statement on its own."""
        result: T = await self._backend.run(fn)
        return result

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one transaction, rolled back on error.

        SQLite: BEGIN IMMEDIATE. PostgreSQL: SERIALIZABLE, and `fn` is run again
        after a serialization failure, so it must touch nothing but the database.
        """
        result: T = await self._backend.transaction(fn)
        return result

    async def close(self) -> None:
        await self._backend.close()
