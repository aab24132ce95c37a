"""Accounts, API keys, sessions and webhook secrets in the auth service's database.

Times are unix seconds (REAL). Keys are never deleted: a revoked key keeps its
row so listings show it and its id is never reused. Sessions are found by the
keyed hash of their token; the clear token is never stored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from lipsync_common.db import Connection, Database, IntegrityError, Row

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
    """
    ALTER TABLE accounts ADD COLUMN password_hash TEXT;
    CREATE INDEX accounts_by_creation ON accounts (created_at, id);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX sessions_by_account ON sessions (account_id);
    CREATE TABLE webhook_secrets (
        account_id TEXT PRIMARY KEY REFERENCES accounts (id),
        nonce TEXT NOT NULL,
        sealed TEXT NOT NULL,
        created_at REAL NOT NULL
    )
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
class SessionOwner:
    """A session with the state of its account, all Authenticate needs."""

    account_id: str
    expires_at: float
    revoked: bool
    account_disabled: bool


@dataclass(frozen=True)
class SealedSecret:
    nonce: str
    sealed: str


@dataclass(frozen=True)
class KeyOwner:
    """A key with the state of its account, all Authenticate needs."""

    key: ApiKeyRecord
    account_disabled: bool


def _account(row: Row) -> Account:
    return Account(
        id=row["id"],
        email=row["email"],
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
    )


def _key(row: Row) -> ApiKeyRecord:
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

    async def create_account(self, email: str, password_hash: str | None = None) -> Account:
        """`email` must already be normalised (lowercased)."""
        account = Account(id=uuid.uuid4().hex, email=email, created_at=time.time(), disabled=False)

        def insert(conn: Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO accounts (id, email, created_at, password_hash)"
                    " VALUES (?, ?, ?, ?)",
                    (account.id, account.email, account.created_at, password_hash),
                )
            except IntegrityError:
                raise DuplicateEmail(email) from None

        await self._db.transaction(insert)
        return account

    async def get_account(self, account_id: str) -> Account | None:
        def select(conn: Connection) -> Account | None:
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            return None if row is None else _account(row)

        return await self._db.run(select)

    async def find_login(self, email: str) -> tuple[Account, str | None] | None:
        """The account of a normalised email and its password hash, if any."""

        def select(conn: Connection) -> tuple[Account, str | None] | None:
            row = conn.execute("SELECT * FROM accounts WHERE email = ?", (email,)).fetchone()
            return None if row is None else (_account(row), row["password_hash"])

        return await self._db.run(select)

    async def list_accounts(self, limit: int, after: tuple[float, str] | None) -> list[Account]:
        """Accounts oldest first, starting after the (created_at, id) of a previous page."""

        def select(conn: Connection) -> list[Account]:
            if after is None:
                rows = conn.execute(
                    "SELECT * FROM accounts ORDER BY created_at, id LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM accounts WHERE created_at > ? OR (created_at = ? AND id > ?)"
                    " ORDER BY created_at, id LIMIT ?",
                    (after[0], after[0], after[1], limit),
                ).fetchall()
            return [_account(row) for row in rows]

        return await self._db.run(select)

    async def disable_account(self, account_id: str) -> Account | None:
        def update(conn: Connection) -> Account | None:
            conn.execute("UPDATE accounts SET disabled = 1 WHERE id = ?", (account_id,))
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            return None if row is None else _account(row)

        return await self._db.transaction(update)

    async def create_session(self, token_hash: str, account_id: str, expires_at: float) -> None:
        await self._db.run(
            lambda conn: conn.execute(
                "INSERT INTO sessions (token_hash, account_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, account_id, time.time(), expires_at),
            )
        )

    async def find_session(self, token_hash: str) -> SessionOwner | None:
        def select(conn: Connection) -> SessionOwner | None:
            row = conn.execute(
                "SELECT sessions.*, accounts.disabled AS account_disabled FROM sessions"
                " JOIN accounts ON accounts.id = sessions.account_id WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            if row is None:
                return None
            return SessionOwner(
                account_id=row["account_id"],
                expires_at=row["expires_at"],
                revoked=row["revoked_at"] is not None,
                account_disabled=bool(row["account_disabled"]),
            )

        return await self._db.run(select)

    async def revoke_session(self, token_hash: str) -> None:
        await self._db.run(
            lambda conn: conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                (time.time(), token_hash),
            )
        )

    async def get_webhook_secret(self, account_id: str) -> SealedSecret | None:
        def select(conn: Connection) -> SealedSecret | None:
            row = conn.execute(
                "SELECT nonce, sealed FROM webhook_secrets WHERE account_id = ?", (account_id,)
            ).fetchone()
            return None if row is None else SealedSecret(row["nonce"], row["sealed"])

        return await self._db.run(select)

    async def put_webhook_secret(
        self, account_id: str, secret: SealedSecret, replace: bool
    ) -> SealedSecret:
        """Store a secret; without `replace`, an existing one wins and is returned."""
        action = (
            "UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed,"
            " created_at = excluded.created_at"
            if replace
            else "NOTHING"
        )

        def upsert(conn: Connection) -> SealedSecret:
            conn.execute(
                "INSERT INTO webhook_secrets (account_id, nonce, sealed, created_at)"
                f" VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO {action}",
                (account_id, secret.nonce, secret.sealed, time.time()),
            )
            row = conn.execute(
                "SELECT nonce, sealed FROM webhook_secrets WHERE account_id = ?", (account_id,)
            ).fetchone()
            return SealedSecret(row["nonce"], row["sealed"])

        return await self._db.transaction(upsert)

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

        def insert(conn: Connection) -> None:
            exists = conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if exists is None:
                raise UnknownAccount(account_id)
            try:
                conn.execute(
                    "INSERT INTO api_keys (key_id, account_id, name, prefix, secret_hash,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (key_id, account_id, name, prefix, secret_hash, record.created_at),
                )
            except IntegrityError:
                raise DuplicateKeyId(key_id) from None

        await self._db.transaction(insert)
        return record

    async def list_keys(self, account_id: str) -> list[ApiKeyRecord]:
        """The account's keys, newest first."""

        def select(conn: Connection) -> list[ApiKeyRecord]:
            rows = conn.execute(
                "SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at DESC, key_id",
                (account_id,),
            ).fetchall()
            return [_key(row) for row in rows]

        return await self._db.run(select)

    async def revoke_key(self, key_id: str, account_id: str = "") -> ApiKeyRecord | None:
        """Revoke a key, keeping the first revocation time; None if unknown.

        With `account_id`, a key of another account counts as unknown.
        """
        now = time.time()

        def update(conn: Connection) -> ApiKeyRecord | None:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None or (account_id and row["account_id"] != account_id):
                return None
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            return _key(row)

        return await self._db.transaction(update)

    async def find_key(self, key_id: str) -> KeyOwner | None:
        def select(conn: Connection) -> KeyOwner | None:
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

        def update(conn: Connection) -> None:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ?"
                " WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at <= ?)",
                (now, key_id, now - min_interval_s),
            )

        await self._db.run(update)
