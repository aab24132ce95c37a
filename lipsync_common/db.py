"""The services' stores on SQLite (the default) or PostgreSQL, with SQLAlchemy Core.

`Database(url, migrations)` builds a SQLAlchemy engine from the URL:
`sqlite:///path` (the standard sqlite3 driver) or `postgresql://...` (psycopg 3;
`postgres://` and `postgresql+psycopg://` are accepted too, and a `?pool_size=N`
query parameter sizes the pool). Stores hand it callbacks `fn(conn)`, taking a
`sqlalchemy.Connection`, that run on a database thread, so the event loop never
blocks; they use Core constructs or `text()`, and a violated constraint is
`sqlalchemy.exc.IntegrityError` on both databases.

Why synchronous SQLAlchemy on threads rather than its asyncio extension: the
extension needs greenlet plus an async driver per database (aiosqlite, which
is itself a thread per connection), and gives nothing a store needs; a
callback of a few statements on a worker thread is simpler to reason about,
and retrying a whole transaction is a plain loop.

SQLite: one connection driven by one dedicated thread per `Database`, so its
writes are serialised in-process and `BEGIN IMMEDIATE` transactions never meet
"database is locked" inside one process; other processes on the same file wait
out the busy timeout. The file is switched to WAL.

PostgreSQL: a pool of `pool_size` connections, one per worker thread (psycopg
releases the GIL while it waits for the server, so that many transactions
overlap). Transactions are SERIALIZABLE and re-run on a serialization failure
or deadlock, so a store needs no locking of its own.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from lipsync_common.migrations import MigrationStep, migrate

T = TypeVar("T")

DEFAULT_POOL_SIZE = 4
# Retrying a serialization failure: attempts and the cap of the jittered backoff.
MAX_ATTEMPTS = 60
BACKOFF_CAP_S = 0.05
# serialization_failure and deadlock_detected: the transaction may simply be re-run.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# The statement that begins a SQLite transaction (see `_sqlite_engine`): an execution option.
_SQLITE_BEGIN = "lipsync_sqlite_begin"


def database_url(url: str) -> tuple[URL, int | None]:
    """The SQLAlchemy URL of a settings URL, and the `pool_size` it asks for, if any."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        size = parsed.query.get("pool_size")
        pool_size = max(1, int(size if isinstance(size, str) else size[-1])) if size else None
        parsed = parsed.set(drivername="postgresql+psycopg").difference_update_query(["pool_size"])
        return parsed, pool_size
    if parsed.drivername == "sqlite":
        return parsed, None
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


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


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 10.0, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # The sqlite3 module's own implicit BEGIN is off; `begin` below says how
        # each transaction starts (SQLAlchemy's documented SQLite recipe).
        dbapi_conn.isolation_level = None
        _enable_wal(dbapi_conn)
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit
        # survives a crash of the process, only a power loss may take back the
        # last ones (FULL would cost an fsync per commit, which capped job
        # creation near 300/s). Clusters run PostgreSQL, fully durable.
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        # Without the option each statement commits on its own (`Database.run`).
        statement = conn.get_execution_options().get(_SQLITE_BEGIN)
        if statement:
            conn.exec_driver_sql(statement)

    return engine


def _is_retryable(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


class Database:
    """A store's database: SQLite or PostgreSQL by URL, with its migrations applied."""

    def __init__(self, url: str, migrations: Sequence[MigrationStep]) -> None:
        parsed, pool_size = database_url(url)
        self._migrations = migrations
        if parsed.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(parsed)
            workers = 1
            self._plain = self.engine
            # IMMEDIATE takes the write lock up front: a transaction that reads then
            # writes cannot be refused half-way because another process wrote first.
            self._serial = self.engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            self._migrating: Engine = self._serial
        else:
            workers = pool_size or DEFAULT_POOL_SIZE
            self.engine = create_engine(
                parsed, pool_size=workers, max_overflow=0, connect_args={"connect_timeout": 10}
            )
            self._plain = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._serial = self.engine.execution_options(isolation_level="SERIALIZABLE")
            # Not SERIALIZABLE: its snapshot would be taken before the migration
            # lock is granted, hiding what the replica before us applied.
            self._migrating = self.engine
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")

    async def _call(self, engine: Engine, fn: Callable[[Connection], T]) -> T:
        def call() -> T:
            with engine.begin() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        """Connect and apply the pending migrations."""
        await self._call(self._migrating, lambda conn: migrate(conn, self._migrations))

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` on a database thread, each statement committed on its own."""
        return await self._call(self._plain, fn)

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one transaction, rolled back on error.

        SQLite: BEGIN IMMEDIATE. PostgreSQL: SERIALIZABLE, and `fn` is run again
        after a serialization failure, so it must touch nothing but the database.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await self._call(self._serial, fn)
            except DBAPIError as error:
                if not _is_retryable(error) or attempt == MAX_ATTEMPTS:
                    raise
            # Full jitter: contenders spread out instead of colliding again.
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP_S, 0.001 * 2**attempt)))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.dispose)
        self._executor.shutdown(wait=True)
