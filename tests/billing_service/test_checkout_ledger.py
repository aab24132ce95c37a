"""The keyed grant behind Stripe Checkout, on SQLite and on PostgreSQL.

One paid Checkout Session is reported by Stripe many times, possibly to
several replicas at once; each report calls `Ledger.grant_once` with the
session's key. Two ledgers on one database stand for two replicas: whatever
the interleaving, exactly one grant is written, and the database's unique
index (not only the service's check) refuses a second entry under a key.
The PostgreSQL half uses the server of tests/stores (skipped when absent).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.exc import IntegrityError

from billing_service import store
from billing_service.ledger import Ledger
from billing_service.store import GRANT, WALLET_API, Entry
from tests.stores.conftest import database_url, new_database_url

__all__ = ["database_url", "new_database_url"]  # the store suite's fixtures, used here
ACCOUNT = "acct-buyer"


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[Ledger, Ledger]]:
    first, second = Ledger(database_url), Ledger(database_url)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_simultaneous_reports_of_one_session_grant_once(
    replicas: tuple[Ledger, Ledger],
) -> None:
    first, second = replicas
    results = await asyncio.gather(
        *(
            (first if n % 2 else second).grant_once(
                "stripe-checkout:cs_test_1", ACCOUNT, 1000, WALLET_API, "Stripe Checkout"
            )
            for n in range(20)
        )
    )
    assert sum(result.written for result in results) == 1
    assert {result.entry.id for result in results} == {results[0].entry.id}
    assert (await first.balance(ACCOUNT)).api_credits == 1000
    grants = [e for e in await second.entries(ACCOUNT) if e.kind == GRANT]
    assert [(g.amount, g.grant_key) for g in grants] == [(1000, "stripe-checkout:cs_test_1")]


async def test_the_database_refuses_a_second_entry_under_a_key(
    replicas: tuple[Ledger, Ledger],
) -> None:
    first, _ = replicas
    assert (await first.grant_once("k1", ACCOUNT, 5, WALLET_API, "first")).written
    duplicate = Entry(ACCOUNT, WALLET_API, GRANT, 5, grant_key="k1")
    with pytest.raises(IntegrityError):
        await first._db.transaction(lambda conn: store.append(conn, duplicate))
    # Keys are per session: another session, and unkeyed grants, are separate entries.
    assert (await first.grant_once("k2", ACCOUNT, 7, WALLET_API, "second")).written
    await first.grant(ACCOUNT, 1, WALLET_API, "operator")
    await first.grant(ACCOUNT, 1, WALLET_API, "operator")
    assert (await first.balance(ACCOUNT)).api_credits == 14
