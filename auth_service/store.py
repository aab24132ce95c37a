"""Accounts, API keys, sessions and webhook secrets in the auth service's database.

Times are unix seconds (DOUBLE PRECISION). Keys are never deleted: a revoked key keeps its
row so listings show it and its id is never reused. Sessions are found by the
keyed hash of their token; the clear token is never stored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    MetaData,
    Row,
    Table,
    Text,
    and_,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from lipsync_common.db import Database

MIGRATIONS = [
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        disabled BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        name TEXT NOT NULL DEFAULT '',
        prefix TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        last_used_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at)
    """,
    """
    ALTER TABLE accounts ADD COLUMN password_hash TEXT;
    CREATE INDEX accounts_by_creation ON accounts (created_at, id);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX sessions_by_account ON sessions (account_id);
    CREATE TABLE webhook_secrets (
        account_id TEXT PRIMARY KEY REFERENCES accounts (id),
        nonce TEXT NOT NULL,
        sealed TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
]

# The tables as the queries see them (the migrations above create them).
metadata = MetaData()
accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("email", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("disabled", BigInteger, nullable=False),
    Column("password_hash", Text),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double),
    Column("revoked_at", Double),
)
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double),
)
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("nonce", Text, nullable=False),
    Column("sealed", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)


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


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id, email=row.email, created_at=row.created_at, disabled=bool(row.disabled)
    )


def _key(row: Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        account_id=row.account_id,
        name=row.name,
        prefix=row.prefix,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


# The statements of the hot paths (every authenticated request) are built once,
# with named parameters: building one costs about as much as running it.
_ACCOUNT = select(accounts).where(accounts.c.id == bindparam("account_id"))
_FIND_SESSION = (
    select(sessions, accounts.c.disabled.label("account_disabled"))
    .join(accounts, accounts.c.id == sessions.c.account_id)
    .where(sessions.c.token_hash == bindparam("hash"))
)
_FIND_KEY = (
    select(api_keys, accounts.c.disabled.label("account_disabled"))
    .join(accounts, accounts.c.id == api_keys.c.account_id)
    .where(api_keys.c.key_id == bindparam("id"))
)
_TOUCH_KEY = update(api_keys).where(
    api_keys.c.key_id == bindparam("id"),
    or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= bindparam("before")),
)


def _get_account(conn: Connection, account_id: str) -> Account | None:
    row = conn.execute(_ACCOUNT, {"account_id": account_id}).first()
    return None if row is None else _account(row)


def _get_secret(conn: Connection, account_id: str) -> SealedSecret | None:
    row = conn.execute(
        select(webhook_secrets.c.nonce, webhook_secrets.c.sealed).where(
            webhook_secrets.c.account_id == account_id
        )
    ).first()
    return None if row is None else SealedSecret(row.nonce, row.sealed)


# Keep or replace an account's secret in one statement; both databases speak ON CONFLICT.
_PUT_SECRET = """
    INSERT INTO webhook_secrets (account_id, nonce, sealed, created_at)
    VALUES (:account_id, :nonce, :sealed, :created_at) ON CONFLICT (account_id) DO
"""
_KEEP = text(_PUT_SECRET + " NOTHING")
_REPLACE = text(
    _PUT_SECRET + " UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed,"
    " created_at = excluded.created_at"
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

        def create(conn: Connection) -> None:
            try:
                conn.execute(
                    insert(accounts).values(
                        id=account.id,
                        email=account.email,
                        created_at=account.created_at,
                        disabled=0,
                        password_hash=password_hash,
                    )
                )
            except IntegrityError:
                raise DuplicateEmail(email) from None

        await self._db.transaction(create)
        return account

    async def get_account(self, account_id: str) -> Account | None:
        return await self._db.run(lambda conn: _get_account(conn, account_id))

    async def find_login(self, email: str) -> tuple[Account, str | None] | None:
        """The account of a normalised email and its password hash, if any."""

        def find(conn: Connection) -> tuple[Account, str | None] | None:
            row = conn.execute(select(accounts).where(accounts.c.email == email)).first()
            return None if row is None else (_account(row), row.password_hash)

        return await self._db.run(find)

    async def list_accounts(self, limit: int, after: tuple[float, str] | None) -> list[Account]:
        """Accounts oldest first, starting after the (created_at, id) of a previous page."""
        query = select(accounts).order_by(accounts.c.created_at, accounts.c.id).limit(limit)
        if after is not None:
            query = query.where(
                or_(
                    accounts.c.created_at > after[0],
                    and_(accounts.c.created_at == after[0], accounts.c.id > after[1]),
                )
            )
        return await self._db.run(lambda conn: [_account(r) for r in conn.execute(query)])

    async def disable_account(self, account_id: str) -> Account | None:
        def disable(conn: Connection) -> Account | None:
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(disabled=1))
            return _get_account(conn, account_id)

        return await self._db.transaction(disable)

    async def create_session(self, token_hash: str, account_id: str, expires_at: float) -> None:
        statement = insert(sessions).values(
            token_hash=token_hash,
            account_id=account_id,
            created_at=time.time(),
            expires_at=expires_at,
        )
        await self._db.run(lambda conn: conn.execute(statement))

    async def find_session(self, token_hash: str) -> SessionOwner | None:
        def find(conn: Connection) -> SessionOwner | None:
            row = conn.execute(_FIND_SESSION, {"hash": token_hash}).first()
            if row is None:
                return None
            return SessionOwner(
                account_id=row.account_id,
                expires_at=row.expires_at,
                revoked=row.revoked_at is not None,
                account_disabled=bool(row.account_disabled),
            )

        return await self._db.run(find)

    async def revoke_session(self, token_hash: str) -> None:
        statement = (
            update(sessions)
            .where(sessions.c.token_hash == token_hash, sessions.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        await self._db.run(lambda conn: conn.execute(statement))

    async def get_webhook_secret(self, account_id: str) -> SealedSecret | None:
        return await self._db.run(lambda conn: _get_secret(conn, account_id))

    async def put_webhook_secret(
        self, account_id: str, secret: SealedSecret, replace: bool
    ) -> SealedSecret:
        """Store a secret; without `replace`, an existing one wins and is returned."""
        params = {
            "account_id": account_id,
            "nonce": secret.nonce,
            "sealed": secret.sealed,
            "created_at": time.time(),
        }

        def put(conn: Connection) -> SealedSecret:
            conn.execute(_REPLACE if replace else _KEEP, params)
            stored = _get_secret(conn, account_id)
            assert stored is not None  # written or kept just above, in this transaction
            return stored

        return await self._db.transaction(put)

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

        def create(conn: Connection) -> None:
            if _get_account(conn, account_id) is None:
                raise UnknownAccount(account_id)
            try:
                conn.execute(
                    insert(api_keys).values(
                        key_id=key_id,
                        account_id=account_id,
                        name=name,
                        prefix=prefix,
                        secret_hash=secret_hash,
                        created_at=record.created_at,
                    )
                )
            except IntegrityError:
                raise DuplicateKeyId(key_id) from None

        await self._db.transaction(create)
        return record

    async def list_keys(self, account_id: str) -> list[ApiKeyRecord]:
        """The account's keys, newest first."""
        query = (
            select(api_keys)
            .where(api_keys.c.account_id == account_id)
            .order_by(api_keys.c.created_at.desc(), api_keys.c.key_id)
        )
        return await self._db.run(lambda conn: [_key(r) for r in conn.execute(query)])

    async def revoke_key(self, key_id: str, account_id: str = "") -> ApiKeyRecord | None:
        """Revoke a key, keeping the first revocation time; None if unknown.

        With `account_id`, a key of another account counts as unknown.
        """
        now = time.time()
        by_id = select(api_keys).where(api_keys.c.key_id == key_id)

        def revoke(conn: Connection) -> ApiKeyRecord | None:
            row = conn.execute(by_id).first()
            if row is None or (account_id and row.account_id != account_id):
                return None
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return _key(conn.execute(by_id).one())

        return await self._db.transaction(revoke)

    async def find_key(self, key_id: str) -> KeyOwner | None:
        def find(conn: Connection) -> KeyOwner | None:
            row = conn.execute(_FIND_KEY, {"id": key_id}).first()
            if row is None:
                return None
            return KeyOwner(key=_key(row), account_disabled=bool(row.account_disabled))

        return await self._db.run(find)

    async def touch_key(self, key_id: str, now: float, min_interval_s: float) -> None:
        """Record a use, unless one was recorded less than `min_interval_s` ago."""
        params = {"id": key_id, "before": now - min_interval_s, "last_used_at": now}
        await self._db.run(lambda conn: conn.execute(_TOUCH_KEY, params))
