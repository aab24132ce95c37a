"""billing_service's ledger on both databases: behaviour, append-only, concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from billing_service import store
from billing_service.ledger import Ledger, ReserveOutcome, Settlement
from billing_service.store import Balance
from lipsync_common.db import Database
from tests.stores.conftest import is_postgres
from tests.stores.ledger_checks import assert_invariants

ACCOUNT = "acct-1"


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    opened = Ledger(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_grants_go_to_their_wallet(ledger: Ledger) -> None:
    assert await ledger.grant(ACCOUNT, 100, "api", "welcome") == Balance(100, 0, 0)
    assert await ledger.grant(ACCOUNT, 7, "user", "web") == Balance(100, 7, 0)
    assert await ledger.balance("someone-else") == Balance(0, 0, 0)
    await assert_invariants(ledger, ACCOUNT)


async def test_reserve_then_capture_charges_once(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    reserved = await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10, model="m")
    assert reserved.outcome is ReserveOutcome.RESERVED and reserved.written
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 20)
    assert (await ledger.capture("job-1")).settlement is Settlement.CAPTURED
    assert (await ledger.capture("job-1")).settlement is Settlement.ALREADY_CAPTURED
    assert (await ledger.release("job-1")).settlement is Settlement.ALREADY_CAPTURED
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)
    entries = await ledger.entries(ACCOUNT)
    assert [e.kind for e in entries] == ["grant", "reserve", "capture"]
    assert entries[2].model == "m" and entries[2].billed_seconds == 10
    await assert_invariants(ledger, ACCOUNT)


async def test_release_gives_the_credits_back_once(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    assert (await ledger.release("job-1")).settlement is Settlement.RELEASED
    assert (await ledger.release("job-1")).settlement is Settlement.ALREADY_RELEASED
    assert (await ledger.capture("job-1")).settlement is Settlement.ALREADY_RELEASED
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)
    await assert_invariants(ledger, ACCOUNT)


async def test_reserve_is_idempotent_and_never_reopens_a_settled_job(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    first = await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    again = await ledger.reserve("job-1", ACCOUNT, credits=40, billed_seconds=20)
    assert again.outcome is ReserveOutcome.RESERVED and not again.written
    assert (again.credits, again.billed_seconds) == (first.credits, first.billed_seconds)
    await ledger.capture("job-1")
    late = await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    assert late.outcome is ReserveOutcome.ALREADY_SETTLED
    assert (await ledger.release("job-2", ACCOUNT)).settlement is Settlement.NOT_RESERVED
    late = await ledger.reserve("job-2", ACCOUNT, credits=20, billed_seconds=10)
    assert late.outcome is ReserveOutcome.ALREADY_SETTLED
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)
    await assert_invariants(ledger, ACCOUNT)


async def test_insufficient_credits_write_nothing_and_user_credits_never_pay(
    ledger: Ledger,
) -> None:
    await ledger.grant(ACCOUNT, 15, "api", "welcome")
    await ledger.grant(ACCOUNT, 1000, "user", "web credits")
    result = await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    assert result.outcome is ReserveOutcome.INSUFFICIENT_CREDITS
    assert result.available_credits == 15
    assert [e.kind for e in await ledger.entries(ACCOUNT)] == ["grant", "grant"]
    assert await ledger.balance(ACCOUNT) == Balance(15, 1000, 0)


async def test_the_database_refuses_to_update_or_delete_entries(
    ledger: Ledger, database_url: str
) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    raw = Database(database_url, store.MIGRATIONS)
    await raw.open()
    try:
        with pytest.raises(IntegrityError, match="append-only"):
            await raw.run(lambda conn: conn.execute(text("UPDATE entries SET amount = 1000000")))
        with pytest.raises(IntegrityError, match="append-only"):
            await raw.run(lambda conn: conn.execute(text("DELETE FROM entries")))
        if is_postgres(database_url):
            with pytest.raises(IntegrityError, match="append-only"):
                await raw.run(lambda conn: conn.execute(text("TRUNCATE entries")))
    finally:
        await raw.close()
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)


async def test_the_ledger_survives_a_restart(database_url: str) -> None:
    first = Ledger(database_url)
    await first.open()
    await first.grant(ACCOUNT, 100, "api", "welcome")
    await first.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    await first.close()
    second = Ledger(database_url)
    await second.open()
    try:
        assert await second.balance(ACCOUNT) == Balance(80, 0, 20)
        assert (await second.capture("job-1")).settlement is Settlement.CAPTURED
        await assert_invariants(second, ACCOUNT)
    finally:
        await second.close()


@pytest.mark.parametrize("replicas", [1, 4])
async def test_100_simultaneous_reserves_against_credits_for_10(
    database_url: str, replicas: int
) -> None:
    """Exactly 10 reserve, 90 are refused, the balance ends at 0, never below.

    Several `Ledger`s on one database stand for several billing replicas.
    """
    ledgers = [Ledger(database_url) for _ in range(replicas)]
    for opened in ledgers:
        await opened.open()
    try:
        await ledgers[0].grant(ACCOUNT, 10 * 30, "api", "exactly ten jobs")
        results = await asyncio.gather(
            *(
                ledgers[i % replicas].reserve(f"job-{i}", ACCOUNT, credits=30, billed_seconds=15)
                for i in range(100)
            )
        )
        outcomes = Counter(result.outcome for result in results)
        assert outcomes == {
            ReserveOutcome.RESERVED: 10,
            ReserveOutcome.INSUFFICIENT_CREDITS: 90,
        }
        assert all(result.available_credits >= 0 for result in results)
        balance = await assert_invariants(ledgers[0], ACCOUNT)
        assert balance == Balance(0, 0, 300)
        # Redelivered reserves and settlements change nothing more.
        reserved = [r for r, res in enumerate(results) if res.outcome is ReserveOutcome.RESERVED]
        await asyncio.gather(
            *(ledgers[(i + k) % replicas].capture(f"job-{i}") for i in reserved for k in range(3)),
            *(
                ledgers[i % replicas].reserve(f"job-{i}", ACCOUNT, credits=30, billed_seconds=15)
                for i in reserved
            ),
        )
        balance = await assert_invariants(ledgers[0], ACCOUNT)
        assert balance == Balance(0, 0, 0)
        assert len(await ledgers[0].entries(ACCOUNT)) == 1 + 10 + 10
    finally:
        for opened in ledgers:
            await opened.close()


async def test_usage_pages_skip_zero_entries_when_asked(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 10, "api", "first")
    await ledger.release("never-reserved", ACCOUNT)  # closes the job id with a zero entry
    await ledger.grant(ACCOUNT, 5, "api", "second")
    everything = await ledger.usage(ACCOUNT, 10, None)
    assert [entry.amount for entry in everything] == [5, 0, 10]
    moved = await ledger.usage(ACCOUNT, 10, None, include_zero=False)
    assert [entry.amount for entry in moved] == [5, 10]
    older = await ledger.usage(ACCOUNT, 10, moved[0].id, include_zero=False)
    assert [entry.amount for entry in older] == [10]
