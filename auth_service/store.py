"""Accounts and API keys in the auth service's own SQLite database.

Times are unix seconds (REAL). Keys are never deleted: a revoked key keeps its
row so listings show it and its id is never reused.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass

from lipsync_common.db import Database

MIGRATIONS = [
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        name TEXT NOT NULL DEFAULT '',
        prefix TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_used_at REAL,
        revoked_at REAL
    );
    CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at)
    """,
]


class DuplicateEmail(Exception):
    pass


class UnknownAccount(Exception):
    pass


class DuplicateKeyId(Exception):
    pass


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    account_id: str
    name: str
    prefix: str
    secret_hash: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class KeyOwner:
    """A key with the state of its account, all Authenticate needs."""

    key: ApiKeyRecord
    account_disabled: bool


def _account(row: sqlite3.Row) -> Account:
    return Account(
        id=row["id"],
        email=row["email"],
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
    )


def _key(row: sqlite3.Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row["key_id"],
        account_id=row["account_id"],
        name=row["name"],
        prefix=row["prefix"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


class AuthStore:
    def __init__(self, database_url: str) -> None:
        self._db = Database(database_url, MIGRATIONS)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def create_account(self, email: str) -> Account:
        """`email` must already be normalised (lowercased)."""
        account = Account(id=uuid.uuid4().hex, email=email, created_at=time.time(), disabled=False)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO accounts (id, email, created_at) VALUES (?, ?, ?)",
                    (account.id, account.email, account.created_at),
                )
            except sqlite3.IntegrityError:
                raise DuplicateEmail(email) from None

        await self._db.transaction(insert)
        return account

    async def get_account(self, account_id: str) -> Account | None:
        def select(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            return None if row is None else _account(row)

        return await self._db.run(select)

    async def create_key(
        self, account_id: str, key_id: str, name: str, prefix: str, secret_hash: str
    ) -> ApiKeyRecord:
        record = ApiKeyRecord(
            key_id=key_id,
            account_id=account_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            created_at=time.time(),
            last_used_at=None,
            revoked_at=None,
        )

        def insert(conn: sqlite3.Connection) -> None:
            exists = conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if exists is None:
                raise UnknownAccount(account_id)
            try:
                conn.execute(
                    "INSERT INTO api_keys (key_id, account_id, name, prefix, secret_hash,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (key_id, account_id, name, prefix, secret_hash, record.created_at),
                )
            except sqlite3.IntegrityError:
                raise DuplicateKeyId(key_id) from None

        await self._db.transaction(insert)
        return record

    async def list_keys(self, account_id: str) -> list[ApiKeyRecord]:
        """The account's keys, newest first."""

        def select(conn: sqlite3.Connection) -> list[ApiKeyRecord]:
            rows = conn.execute(
                "SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at DESC, key_id",
                (account_id,),
            ).fetchall()
            return [_key(row) for row in rows]

        return await self._db.run(select)

    async def revoke_key(self, key_id: str) -> ApiKeyRecord | None:
        """Revoke a key, keeping the first revocation time; None if unknown."""
        now = time.time()

        def update(conn: sqlite3.Connection) -> ApiKeyRecord | None:
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            return None if row is None else _key(row)

        return await self._db.transaction(update)

    async def find_key(self, key_id: str) -> KeyOwner | None:
        def select(conn: sqlite3.Connection) -> KeyOwner | None:
            row = conn.execute(
                "SELECT api_keys.*, accounts.disabled AS account_disabled FROM api_keys"
                " JOIN accounts ON accounts.id = api_keys.account_id WHERE key_id = ?",
                (key_id,),
            ).fetchone()
            if row is None:
                return None
            return KeyOwner(key=_key(row), account_disabled=bool(row["account_disabled"]))

        return await self._db.run(select)

    async def touch_key(self, key_id: str, now: float, min_interval_s: float) -> None:
        """Record a use, unless one was recorded less than `min_interval_s` ago."""

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ?"
                " WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at <= ?)",
                (now, key_id, now - min_interval_s),
            )

        await self._db.run(update)
