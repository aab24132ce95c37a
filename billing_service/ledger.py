"""The ledger's operations: grant, reserve, capture, release, each one transaction.

Every operation runs in a single transaction (SQLite `BEGIN IMMEDIATE`,
PostgreSQL SERIALIZABLE and retried on conflict), so concurrent reserves of one
account are serialised, even across replicas, and can never spend the same
credits twice. Reserve, capture and release are idempotent by job id (a unique index
allows one entry of each kind per job):

* a job is reserved at most once; asking again returns the first reservation;
* a reservation is settled at most once, by a capture or by a release;
* settling a job that was never reserved records a zero entry, which closes the
  job id: a reserve that arrives late (from a worker that outlived its job)
  finds the job settled instead of holding credits that nothing would release.

A keyed grant (`grant_once`) is idempotent by its key in the same way: the
first call writes the entry, every later one returns it unchanged.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from billing_service import store
from billing_service.metrics import CREDITS_CAPTURED, CREDITS_RELEASED, CREDITS_RESERVED
from billing_service.store import Balance, Entry
from lipsync_common.db import Database

log = logging.getLogger(__name__)


class ReserveOutcome(enum.Enum):
    RESERVED = "reserved"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    ALREADY_SETTLED = "already_settled"


@dataclass(frozen=True)
class ReserveResult:
    outcome: ReserveOutcome
    billed_seconds: int
    credits: int
    # API credits available before this reservation; for a repeated call, now.
    available_credits: int
    # False when the call only repeated an earlier outcome.
    written: bool


class Settlement(enum.Enum):
    CAPTURED = "captured"
    RELEASED = "released"
    # The job was already captured or released; nothing changed.
    ALREADY_CAPTURED = "already_captured"
    ALREADY_RELEASED = "already_released"
    # No reservation existed; a zero entry now closes the job id.
    NOT_RESERVED = "not_reserved"


@dataclass(frozen=True)
class KeyedGrant:
    # The entry under the key: this call's, or the one an earlier call wrote.
    entry: Entry
    balance: Balance
    # False when the key had already been granted; nothing changed.
    written: bool


@dataclass(frozen=True)
class SettleResult:
    settlement: Settlement
    account_id: str
    credits: int


class Ledger:
    def __init__(self, database_url: str) -> None:
        self._db: Database = store.open_database(database_url)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def balance(self, account_id: str) -> Balance:
        return await self._db.run(lambda conn: store.balance(conn, account_id))

    async def entries(self, account_id: str) -> list[Entry]:
        return await self._db.run(lambda conn: store.account_entries(conn, account_id))

    async def usage(
        self, account_id: str, limit: int, before_id: int | None, *, include_zero: bool = True
    ) -> list[Entry]:
        """A page of the account's entries, newest first, older than `before_id`."""
        return await self._db.run(
            lambda conn: store.usage_page(
                conn, account_id, before_id, limit, include_zero=include_zero
            )
        )

    async def grant(self, account_id: str, amount: int, wallet: str, reason: str) -> Balance:
        if amount <= 0:
            raise ValueError("a grant must be positive")
        entry = Entry(
            account_id=account_id, wallet=wallet, kind=store.GRANT, amount=amount, reason=reason
        )

        def write(conn: Connection) -> Balance:
            store.append(conn, entry)
            return store.balance(conn, account_id)

        result = await self._db.transaction(write)
        log.info(
            "credits granted",
            extra={"fields": {"account_id": account_id, "wallet": wallet, "amount": amount}},
        )
        return result

    async def grant_once(
        self, key: str, account_id: str, amount: int, wallet: str, reason: str
    ) -> KeyedGrant:
        """Grant under `key` unless something already was; never twice for one key."""
        if amount <= 0:
            raise ValueError("a grant must be positive")
        if not key:
            raise ValueError("a keyed grant needs a key")
        entry = Entry(
            account_id=account_id,
            wallet=wallet,
            kind=store.GRANT,
            amount=amount,
            reason=reason,
            grant_key=key,
        )

        def write(conn: Connection) -> KeyedGrant:
            existing = store.keyed_grant(conn, key)
            if existing is not None:
                return KeyedGrant(existing, store.balance(conn, existing.account_id), False)
            written = store.append(conn, entry)
            return KeyedGrant(written, store.balance(conn, account_id), True)

        try:
            result = await self._db.transaction(write)
        except IntegrityError:
            # Another replica wrote the key between our read and our insert.
            result = await self._db.transaction(write)
        log.info(
            "keyed grant",
            extra={
                "fields": {
                    "account_id": result.entry.account_id,
                    "wallet": wallet,
                    "amount": result.entry.amount,
                    "repeated": not result.written,
                }
            },
        )
        return result

    async def reserve(
        self,
        job_id: str,
        account_id: str,
        credits: int,
        billed_seconds: int,
        model: str = "",
        resolution: str = "",
    ) -> ReserveResult:
        if credits <= 0:
            raise ValueError("a reservation must be positive")

        def write(conn: Connection) -> ReserveResult:
            existing = store.job_entries(conn, job_id)
            available = store.balance(conn, account_id).api_credits
            if store.CAPTURE in existing or store.RELEASE in existing:
                return ReserveResult(
                    ReserveOutcome.ALREADY_SETTLED, billed_seconds, credits, available, False
                )
            reserved = existing.get(store.RESERVE)
            if reserved is not None:
                return ReserveResult(
                    ReserveOutcome.RESERVED,
                    reserved.billed_seconds or 0,
                    reserved.amount,
                    available,
                    False,
                )
            if available < credits:
                return ReserveResult(
                    ReserveOutcome.INSUFFICIENT_CREDITS, billed_seconds, credits, available, False
                )
            store.append(
                conn,
                Entry(
                    account_id=account_id,
                    wallet=store.WALLET_API,
                    kind=store.RESERVE,
                    job_id=job_id,
                    amount=credits,
                    billed_seconds=billed_seconds,
                    model=model,
                    resolution=resolution,
                ),
            )
            return ReserveResult(ReserveOutcome.RESERVED, billed_seconds, credits, available, True)

        result = await self._db.transaction(write)
        if result.written:
            CREDITS_RESERVED.inc(result.credits)
        log.info(
            "reserve",
            extra={
                "fields": {
                    "account_id": account_id,
                    "outcome": result.outcome.value,
                    "credits": result.credits,
                    "available_credits": result.available_credits,
                    "repeated": not result.written and result.outcome is ReserveOutcome.RESERVED,
                }
            },
        )
        return result

    async def capture(self, job_id: str, account_id: str = "") -> SettleResult:
        """Charge the job's reservation. `account_id` only labels a missing one."""
        result = await self._db.transaction(
            lambda conn: _settle(conn, job_id, account_id, store.CAPTURE, "job completed")
        )
        if result.settlement is Settlement.CAPTURED:
            CREDITS_CAPTURED.inc(result.credits)
        elif result.settlement is Settlement.NOT_RESERVED:
            log.warning("completed job had no reservation; nothing charged")
        log.info("capture", extra={"fields": _settle_fields(result)})
        return result

    async def release(
        self, job_id: str, account_id: str = "", reason: str = "job failed"
    ) -> SettleResult:
        """Give the job's reservation back. `account_id` only labels a missing one."""
        result = await self._db.transaction(
            lambda conn: _settle(conn, job_id, account_id, store.RELEASE, reason)
        )
        if result.settlement is Settlement.RELEASED:
            CREDITS_RELEASED.inc(result.credits)
        log.info("release", extra={"fields": _settle_fields(result)})
        return result


def _settle(conn: Connection, job_id: str, account_id: str, kind: str, reason: str) -> SettleResult:
    existing = store.job_entries(conn, job_id)
    if store.CAPTURE in existing:
        entry = existing[store.CAPTURE]
        return SettleResult(Settlement.ALREADY_CAPTURED, entry.account_id, entry.amount)
    if store.RELEASE in existing:
        entry = existing[store.RELEASE]
        return SettleResult(Settlement.ALREADY_RELEASED, entry.account_id, entry.amount)
    reserved = existing.get(store.RESERVE)
    settled = Entry(
        account_id=reserved.account_id if reserved else account_id,
        wallet=store.WALLET_API,
        kind=kind,
        job_id=job_id,
        amount=reserved.amount if reserved else 0,
        billed_seconds=reserved.billed_seconds if reserved else None,
        model=reserved.model if reserved else "",
        resolution=reserved.resolution if reserved else "",
        reason=reason,
    )
    store.append(conn, settled)
    if reserved is None:
        return SettleResult(Settlement.NOT_RESERVED, settled.account_id, 0)
    done = Settlement.CAPTURED if kind == store.CAPTURE else Settlement.RELEASED
    return SettleResult(done, settled.account_id, settled.amount)


def _settle_fields(result: SettleResult) -> dict[str, object]:
    return {
        "account_id": result.account_id,
        "settlement": result.settlement.value,
        "credits": result.credits,
    }
