"""PostgreSQL behind the same `Database` API as SQLite (psycopg 3, synchronous).

Why a small pool of threads, each owning one connection: the stores' callbacks
are synchronous code that issues a few statements, each a network round trip.
psycopg releases the GIL while it waits for the server, so a handful of
connections lets that many transactions overlap in one process, where a single
thread would serialise them all behind each other's round trips (SQLite, with
one writer anyway, does not need this). Correctness does not come from the
pool: every transaction is SERIALIZABLE and retried when PostgreSQL reports a
serialization failure or deadlock, so a store never needs its own locking.

psycopg is imported here only, so the SQLite default needs nothing installed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors
from psycopg.adapt import Buffer, Loader

from lipsync_common.db_sql import to_psycopg, translate_ddl

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 4
# Retrying a serialization failure: attempts and the cap of the jittered backoff.
MAX_ATTEMPTS = 60
BACKOFF_CAP_S = 0.05
# Advisory lock held while migrating, so replicas starting together take turns.
MIGRATION_LOCK = 0x6C69_7073_796E_63  # "lipsync"
_RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)


class PgRow:
    """A result row readable by position or (case-insensitive) name, like sqlite3.Row."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            index = self._names.get(key)
            if index is None:
                index = self._names[key.lower()]
            return self._values[index]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PgRow) and tuple(self._values) == tuple(other._values)

    def __hash__(self) -> int:
        return hash(tuple(self._values))

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=False))!r})"


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    names: dict[str, int] = {}
    for index, column in enumerate(cursor.description or ()):
        names.setdefault(column.name, index)
        names.setdefault(column.name.lower(), index)
    return lambda values: PgRow(names, values)


class _NumericLoader(Loader):
    """NUMERIC (what SUM over BIGINT returns) as int or float, as SQLite gives it."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return float(text) if any(c in text for c in ".eEN") else int(text)


class PgCursor:
    """The part of sqlite3.Cursor the stores use; statements without rows fetch nothing."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: psycopg.Cursor[PgRow]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description is not None else []


Params = Sequence[Any] | Mapping[str, Any]


class PgConnection:
    """What a store callback gets on PostgreSQL: `execute(sql, params)` in SQLite's SQL."""

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Params = (), /) -> PgCursor:
        named = isinstance(parameters, Mapping)
        # SQLite stores a bool as the integer it is; PostgreSQL would refuse a
        # boolean in an INTEGER (BIGINT) column.
        if named:
            params: Params = {
                k: int(v) if isinstance(v, bool) else v
                for k, v in parameters.items()  # type: ignore[union-attr]
            }
        else:
            params = [int(v) if isinstance(v, bool) else v for v in parameters]
        try:
            return PgCursor(self.raw.execute(to_psycopg(sql, named), params))
        except errors.IntegrityError as exc:
            # One exception type for both databases, so `except IntegrityError`
            # in a store (a duplicate email, key id...) works unchanged.
            raise sqlite3.IntegrityError(str(exc).strip()) from exc

    def executemany(self, sql: str, seq_of_parameters: Sequence[Params], /) -> None:
        for parameters in seq_of_parameters:
            self.execute(sql, parameters)


def split_url(url: str, default_pool_size: int) -> tuple[str, int]:
    """The libpq URL without our `pool_size` query parameter, and that size."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    pool_size = default_pool_size
    kept = []
    for key, value in query:
        if key == "pool_size":
            pool_size = max(1, int(value))
        else:
            kept.append((key, value))
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(kept))), pool_size


class PostgresBackend:
    """A fixed set of connections, one per worker thread."""

    dialect = "postgres"

    def __init__(self, url: str, migrations: Sequence[Any], pool_size: int | None) -> None:
        self._conninfo, size = split_url(url, pool_size or DEFAULT_POOL_SIZE)
        self._migrations = migrations
        self._size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="postgres")
        self._idle: queue.SimpleQueue[PgConnection] = queue.SimpleQueue()
        self._all: list[PgConnection] = []

    def _connect(self) -> PgConnection:
        raw = psycopg.connect(
            self._conninfo, autocommit=True, row_factory=_row_factory, connect_timeout=10
        )
        raw.adapters.register_loader("numeric", _NumericLoader)
        return PgConnection(raw)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(self._executor, self._connect)
        self._all.append(first)
        await loop.run_in_executor(self._executor, self._migrate, first.raw)
        for _ in range(self._size - 1):
            self._all.append(await loop.run_in_executor(self._executor, self._connect))
        for conn in self._all:
            self._idle.put(conn)

    def _migrate(self, raw: psycopg.Connection[PgRow]) -> None:
        raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            row = raw.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
            current = (row[0] if row else None) or 0
            for version, migration in enumerate(self._migrations, start=1):
                if version <= current:
                    continue
                script = (
                    translate_ddl(migration) if isinstance(migration, str) else migration.postgres
                )
                with raw.transaction():
                    # No parameters: psycopg sends the script as one multi-statement query.
                    raw.execute(script.encode())
                    raw.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        finally:
            raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def _call(self, fn: Callable[[PgConnection], T]) -> T:
        conn = self._idle.get()
        try:
            if conn.raw.closed or conn.raw.broken:
                # The server restarted or the socket died: start afresh. If that
                # fails too, the dead one goes back and the next call tries again.
                fresh = self._connect()
                self._all[self._all.index(conn)] = fresh
                conn = fresh
            return fn(conn)
        finally:
            self._idle.put(conn)

    async def run(self, fn: Callable[[PgConnection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    async def transaction(self, fn: Callable[[PgConnection], T]) -> T:
        """`fn` in a SERIALIZABLE transaction, re-run whole on a serialization failure.

        `fn` must therefore have no effect outside the database.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await self.run(lambda conn: _in_transaction(conn, fn))
            except _RETRYABLE:
                if attempt == MAX_ATTEMPTS:
                    raise
            # Full jitter: contenders spread out instead of colliding again.
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP_S, 0.001 * 2**attempt)))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        def close_all() -> None:
            for conn in self._all:
                conn.raw.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close_all)
        self._all.clear()
        self._executor.shutdown(wait=True)


def _in_transaction(conn: PgConnection, fn: Callable[[PgConnection], T]) -> T:
    conn.raw.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
    try:
        result = fn(conn)
        conn.raw.execute("COMMIT")
    except BaseException:
        if not conn.raw.broken:
            conn.raw.execute("ROLLBACK")
        raise
    return result
