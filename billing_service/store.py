"""The ledger's table: append-only entries in the billing service's database.

Nothing here ever updates or deletes an entry; triggers make the database refuse to.
Balances are sums over an account's entries, computed inside the transaction
that needs them, so a balance always equals its history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lipsync_common.db import Connection, Database, Migration, MigrationStep, Row

WALLET_API = "api"
WALLET_USER = "user"
GRANT = "grant"
RESERVE = "reserve"
CAPTURE = "capture"
RELEASE = "release"

MIGRATIONS: list[MigrationStep] = [
    """
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        wallet TEXT NOT NULL CHECK (wallet IN ('api', 'user')),
        kind TEXT NOT NULL CHECK (kind IN ('grant', 'reserve', 'capture', 'release')),
        job_id TEXT,
        amount INTEGER NOT NULL CHECK (amount > 0 OR (kind IN ('capture', 'release')
            AND amount = 0)),
        billed_seconds INTEGER,
        model TEXT NOT NULL DEFAULT '',
        resolution TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        CHECK (kind = 'grant' OR (job_id IS NOT NULL AND wallet = 'api'))
    );
    CREATE UNIQUE INDEX entries_one_per_job_and_kind ON entries (job_id, kind)
        WHERE job_id IS NOT NULL;
    CREATE INDEX entries_by_account ON entries (account_id, wallet, kind, amount)
    """,
    # The ledger is append-only: the database itself refuses edits.
    Migration(
        sqlite="""
        CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
        BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
        CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
        BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END
        """,
        # An integrity violation, as on SQLite, so both refuse with IntegrityError.
        postgres="""
        CREATE FUNCTION entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger entries are append-only'
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
            FOR EACH ROW EXECUTE FUNCTION entries_append_only();
        CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
            FOR EACH ROW EXECUTE FUNCTION entries_append_only();
        CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
            FOR EACH STATEMENT EXECUTE FUNCTION entries_append_only()
        """,
    ),
    # Usage pages walk an account's entries newest first.
    """
    CREATE INDEX entries_by_account_and_id ON entries (account_id, id)
    """,
]


@dataclass(frozen=True)
class Entry:
    account_id: str
    wallet: str
    kind: str
    amount: int
    job_id: str | None = None
    billed_seconds: int | None = None
    model: str = ""
    resolution: str = ""
    reason: str = ""
    created_at: float = 0.0
    id: int = 0


@dataclass(frozen=True)
class Balance:
    """An account's wallets, derived from its entries."""

    api_credits: int
    user_credits: int
    reserved_credits: int


def open_database(url: str) -> Database:
    return Database(url, MIGRATIONS)


def _entry(row: Row) -> Entry:
    return Entry(
        id=row["id"],
        account_id=row["account_id"],
        wallet=row["wallet"],
        kind=row["kind"],
        job_id=row["job_id"],
        amount=row["amount"],
        billed_seconds=row["billed_seconds"],
        model=row["model"],
        resolution=row["resolution"],
        reason=row["reason"],
        created_at=row["created_at"],
    )


def append(conn: Connection, entry: Entry) -> Entry:
    created_at = entry.created_at or time.time()
    cursor = conn.execute(
        "INSERT INTO entries (account_id, wallet, kind, job_id, amount, billed_seconds,"
        " model, resolution, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING *",
        (
            entry.account_id,
            entry.wallet,
            entry.kind,
            entry.job_id,
            entry.amount,
            entry.billed_seconds,
            entry.model,
            entry.resolution,
            entry.reason,
            created_at,
        ),
    )
    # fetchall, not fetchone: SQLite finishes a RETURNING statement only once read to the end.
    (row,) = cursor.fetchall()
    return _entry(row)


def job_entries(conn: Connection, job_id: str) -> dict[str, Entry]:
    """The reserve, capture and release of a job that exist, by kind."""
    rows = conn.execute("SELECT * FROM entries WHERE job_id = ?", (job_id,)).fetchall()
    return {row["kind"]: _entry(row) for row in rows}


def account_entries(conn: Connection, account_id: str) -> list[Entry]:
    """Every entry of an account, oldest first."""
    rows = conn.execute(
        "SELECT * FROM entries WHERE account_id = ? ORDER BY id", (account_id,)
    ).fetchall()
    return [_entry(row) for row in rows]


def balance(conn: Connection, account_id: str) -> Balance:
    # A capture leaves the reserved credits spent; a release gives them back.
    row = conn.execute(
        """
        SELECT
            COALESCE(SUM(CASE
                WHEN wallet = 'api' AND kind IN ('grant', 'release') THEN amount
                WHEN wallet = 'api' AND kind = 'reserve' THEN -amount
            END), 0) AS api_credits,
            COALESCE(SUM(CASE WHEN wallet = 'user' AND kind = 'grant' THEN amount END), 0)
                AS user_credits,
            COALESCE(SUM(CASE
                WHEN wallet = 'api' AND kind = 'reserve' THEN amount
                WHEN wallet = 'api' AND kind IN ('capture', 'release') THEN -amount
            END), 0) AS reserved_credits
        FROM entries WHERE account_id = ?
        """,
        (account_id,),
    ).fetchone()
    return Balance(
        api_credits=row["api_credits"],
        user_credits=row["user_credits"],
        reserved_credits=row["reserved_credits"],
    )


def usage_page(
    conn: Connection,
    account_id: str,
    before_id: int | None,
    limit: int,
    *,
    include_zero: bool = True,
) -> list[Entry]:
    """Up to `limit` entries of an account, newest first, older than `before_id`."""
    where = "account_id = ?"
    params: list[str | int] = [account_id]
    if before_id is not None:
        where += " AND id < ?"
        params.append(before_id)
    if not include_zero:
        where += " AND amount <> 0"
    rows = conn.execute(
        f"SELECT * FROM entries WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit)
    ).fetchall()
    return [_entry(row) for row in rows]
