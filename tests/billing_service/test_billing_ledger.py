from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from billing_service.ledger import Ledger, ReserveOutcome, Settlement
from billing_service.store import Balance

ACCOUNT = "acct-1"


async def reserve(ledger: Ledger, job_id: str, credits: int = 20) -> ReserveOutcome:
    result = await ledger.reserve(job_id, ACCOUNT, credits=credits, billed_seconds=credits // 2)
    return result.outcome


async def assert_balance_is_sum_of_entries(ledger: Ledger, account_id: str = ACCOUNT) -> None:
    entries = await ledger.entries(account_id)
    total: dict[tuple[str, str], int] = {}
    for entry in entries:
        total[(entry.wallet, entry.kind)] = total.get((entry.wallet, entry.kind), 0) + entry.amount
    api = total.get(("api", "grant"), 0)
    reserves = total.get(("api", "reserve"), 0)
    captures = total.get(("api", "capture"), 0)
    releases = total.get(("api", "release"), 0)
    expected = Balance(
        api_credits=api - reserves + releases,
        user_credits=total.get(("user", "grant"), 0),
        reserved_credits=reserves - captures - releases,
    )
    assert await ledger.balance(account_id) == expected
    assert expected.api_credits >= 0
    assert expected.reserved_credits >= 0


async def test_grant_adds_to_the_chosen_wallet(ledger: Ledger) -> None:
    assert await ledger.grant(ACCOUNT, 100, "api", "welcome") == Balance(100, 0, 0)
    assert await ledger.grant(ACCOUNT, 7, "user", "web") == Balance(100, 7, 0)
    assert await ledger.balance("someone-else") == Balance(0, 0, 0)
    await assert_balance_is_sum_of_entries(ledger)


async def test_grant_must_be_positive(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.grant(ACCOUNT, 0, "api", "nothing")


async def test_reserve_then_capture_charges_once(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    assert await reserve(ledger, "job-1") is ReserveOutcome.RESERVED
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 20)

    first = await ledger.capture("job-1")
    assert first.settlement is Settlement.CAPTURED
    assert first.credits == 20
    second = await ledger.capture("job-1")
    assert second.settlement is Settlement.ALREADY_CAPTURED
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)
    kinds = [entry.kind for entry in await ledger.entries(ACCOUNT)]
    assert kinds == ["grant", "reserve", "capture"]
    await assert_balance_is_sum_of_entries(ledger)


async def test_release_gives_the_credits_back(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    await reserve(ledger, "job-1")
    assert (await ledger.release("job-1")).settlement is Settlement.RELEASED
    assert (await ledger.release("job-1")).settlement is Settlement.ALREADY_RELEASED
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)
    await assert_balance_is_sum_of_entries(ledger)


async def test_release_after_capture_changes_nothing(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    await reserve(ledger, "job-1")
    await ledger.capture("job-1")
    assert (await ledger.release("job-1")).settlement is Settlement.ALREADY_CAPTURED
    assert (await ledger.capture("job-1")).settlement is Settlement.ALREADY_CAPTURED
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)
    assert len(await ledger.entries(ACCOUNT)) == 3


async def test_capture_after_release_changes_nothing(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    await reserve(ledger, "job-1")
    await ledger.release("job-1")
    assert (await ledger.capture("job-1")).settlement is Settlement.ALREADY_RELEASED
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)


async def test_reserve_is_idempotent_by_job_id(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    first = await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    again = await ledger.reserve("job-1", ACCOUNT, credits=40, billed_seconds=20)
    assert again.outcome is ReserveOutcome.RESERVED
    assert (again.credits, again.billed_seconds) == (first.credits, first.billed_seconds)
    assert not again.written
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 20)


async def test_reserve_of_a_settled_job_holds_nothing(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    await reserve(ledger, "job-1")
    await ledger.capture("job-1")
    assert await reserve(ledger, "job-1") is ReserveOutcome.ALREADY_SETTLED
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)


async def test_insufficient_credits_write_nothing(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 15, "api", "welcome")
    await ledger.grant(ACCOUNT, 1000, "user", "web credits never pay for API jobs")
    result = await ledger.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    assert result.outcome is ReserveOutcome.INSUFFICIENT_CREDITS
    assert result.available_credits == 15
    assert [entry.kind for entry in await ledger.entries(ACCOUNT)] == ["grant", "grant"]
    assert await ledger.balance(ACCOUNT) == Balance(15, 1000, 0)


async def test_reserve_can_spend_the_balance_to_zero(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 20, "api", "welcome")
    assert await reserve(ledger, "job-1") is ReserveOutcome.RESERVED
    assert await reserve(ledger, "job-2", credits=10) is ReserveOutcome.INSUFFICIENT_CREDITS
    assert await ledger.balance(ACCOUNT) == Balance(0, 0, 20)


async def test_settling_an_unreserved_job_closes_it(ledger: Ledger) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    released = await ledger.release("job-1", ACCOUNT)
    assert released.settlement is Settlement.NOT_RESERVED
    assert await reserve(ledger, "job-1") is ReserveOutcome.ALREADY_SETTLED
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)
    await assert_balance_is_sum_of_entries(ledger)


async def test_entries_cannot_be_updated_or_deleted(ledger: Ledger, tmp_path: Path) -> None:
    await ledger.grant(ACCOUNT, 100, "api", "welcome")
    conn = sqlite3.connect(tmp_path / "billing.db")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE entries SET amount = 1000000")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM entries")
    finally:
        conn.close()
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)


async def test_ledger_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    first = Ledger(url)
    await first.open()
    await first.grant(ACCOUNT, 100, "api", "welcome")
    await first.reserve("job-1", ACCOUNT, credits=20, billed_seconds=10)
    await first.close()

    second = Ledger(url)
    await second.open()
    try:
        assert await second.balance(ACCOUNT) == Balance(80, 0, 20)
        assert (await second.capture("job-1")).settlement is Settlement.CAPTURED
    finally:
        await second.close()
