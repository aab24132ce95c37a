"""The minimum-charge check against a real BillingService over a SQLite ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from billing_service.store import WALLET_API
from job_service.funds import FundsCheck
from tests.billing_service.billing_harness import BillingHarness, running_billing
from tests.job_specs import P720, image_spec

ACCOUNT = "acct"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def billing(tmp_path: Path) -> AsyncIterator[BillingHarness]:
    async with running_billing(tmp_path) as harness:
        yield harness


async def spend_all(billing: BillingHarness, job_id: str, credits: int) -> None:
    await billing.ledger.reserve(
        job_id=job_id, account_id=ACCOUNT, credits=credits, billed_seconds=5
    )


async def test_the_minimum_charge_must_be_covered(billing: BillingHarness) -> None:
    funds = FundsCheck(billing.stub, fresh_s=0)
    assert await funds.shortfall(ACCOUNT, image_spec()) == "insufficient credits: need 10, have 0"
    await billing.ledger.grant(ACCOUNT, 10, WALLET_API, "test")
    assert await funds.shortfall(ACCOUNT, image_spec()) == ""
    # 720p costs twice as much per second.
    assert await funds.shortfall(ACCOUNT, image_spec(resolution=P720)) == (
        "insufficient credits: need 20, have 10"
    )


async def test_a_yes_is_kept_for_a_second_and_a_no_never(billing: BillingHarness) -> None:
    clock = Clock()
    funds = FundsCheck(billing.stub, fresh_s=1.0, clock=clock)
    assert await funds.shortfall(ACCOUNT, image_spec()) != ""
    await billing.ledger.grant(ACCOUNT, 10, WALLET_API, "bought credits")
    # The "no" was not kept: credits just bought count at once.
    assert await funds.shortfall(ACCOUNT, image_spec()) == ""
    await spend_all(billing, "job-1", 10)
    clock.now += 0.9
    assert await funds.shortfall(ACCOUNT, image_spec()) == ""  # still the kept "yes"
    clock.now += 0.2
    assert await funds.shortfall(ACCOUNT, image_spec()) == "insufficient credits: need 10, have 0"
