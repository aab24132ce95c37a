from __future__ import annotations

import asyncio

import grpc
import pytest

from billing_service.store import Balance
from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import jobs_pb2
from tests.billing_service.billing_harness import BillingHarness, image_usage
from tests.job_specs import multi_spec

ACCOUNT = "acct-1"


async def grant(
    billing: BillingHarness, amount: int, **extra: object
) -> billing_pb2.GetBalanceResponse:
    response = await billing.stub.GrantCredits(
        billing_pb2.GrantCreditsRequest(account_id=ACCOUNT, amount=amount, reason="test", **extra)
    )
    return response.balance


async def reserve(
    billing: BillingHarness, job_id: str, usage: billing_pb2.Usage
) -> billing_pb2.ReserveResponse:
    return await billing.stub.Reserve(
        billing_pb2.ReserveRequest(job_id=job_id, account_id=ACCOUNT, usage=usage)
    )


async def test_quote_prices_without_charging(billing: BillingHarness) -> None:
    quote = await billing.stub.Quote(
        billing_pb2.QuoteRequest(usage=image_usage(3.0, jobs_pb2.RESOLUTION_720P))
    )
    assert (quote.billed_seconds, quote.credits) == (5, 20)
    multi = billing_pb2.Usage(
        spec=multi_spec(jobs_pb2.ORDER_MEANWHILE), duration_seconds=[4.0, 12.5]
    )
    quote = await billing.stub.Quote(billing_pb2.QuoteRequest(usage=multi))
    assert (quote.billed_seconds, quote.credits) == (13, 26)


async def test_quote_of_an_unpriceable_usage_is_invalid(billing: BillingHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await billing.stub.Quote(billing_pb2.QuoteRequest(usage=billing_pb2.Usage()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_grant_defaults_to_the_api_wallet(billing: BillingHarness) -> None:
    balance = await grant(billing, 100)
    assert (balance.api_credits, balance.user_credits) == (100, 0)
    balance = await grant(billing, 30, wallet=billing_pb2.WALLET_USER)
    assert (balance.api_credits, balance.user_credits) == (100, 30)
    read = await billing.stub.GetBalance(billing_pb2.GetBalanceRequest(account_id=ACCOUNT))
    assert read == balance


@pytest.mark.parametrize("amount", [0, -5])
async def test_grant_must_be_positive(billing: BillingHarness, amount: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grant(billing, amount)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_reserve_holds_the_exact_price(billing: BillingHarness) -> None:
    await grant(billing, 100)
    response = await reserve(billing, "job-1", image_usage(3.0, jobs_pb2.RESOLUTION_720P))
    assert response.outcome == billing_pb2.RESERVE_OUTCOME_RESERVED
    assert (response.billed_seconds, response.credits, response.available_credits) == (5, 20, 100)
    again = await reserve(billing, "job-1", image_usage(3.0, jobs_pb2.RESOLUTION_720P))
    assert again.outcome == billing_pb2.RESERVE_OUTCOME_RESERVED
    assert again.credits == 20
    assert await billing.ledger.balance(ACCOUNT) == Balance(80, 0, 20)


async def test_reserve_beyond_the_balance_is_refused(billing: BillingHarness) -> None:
    await grant(billing, 8)
    response = await reserve(billing, "job-1", image_usage(3.0))
    assert response.outcome == billing_pb2.RESERVE_OUTCOME_INSUFFICIENT_CREDITS
    assert (response.credits, response.available_credits) == (10, 8)
    assert await billing.ledger.balance(ACCOUNT) == Balance(8, 0, 0)


async def test_reserve_of_a_settled_job_is_already_settled(billing: BillingHarness) -> None:
    await grant(billing, 100)
    await reserve(billing, "job-1", image_usage(3.0))
    await billing.ledger.release("job-1")
    response = await reserve(billing, "job-1", image_usage(3.0))
    assert response.outcome == billing_pb2.RESERVE_OUTCOME_ALREADY_SETTLED
    assert await billing.ledger.balance(ACCOUNT) == Balance(100, 0, 0)


async def test_reserve_requires_a_job_and_an_account(billing: BillingHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await billing.stub.Reserve(
            billing_pb2.ReserveRequest(account_id=ACCOUNT, usage=image_usage(3.0))
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_concurrent_reserves_never_overspend(billing: BillingHarness) -> None:
    await grant(billing, 100)
    # 5 s at 480p is 10 credits: the balance covers exactly 10 of the 50 jobs.
    responses = await asyncio.gather(
        *(reserve(billing, f"job-{n}", image_usage(5.0)) for n in range(50))
    )
    outcomes = [response.outcome for response in responses]
    assert outcomes.count(billing_pb2.RESERVE_OUTCOME_RESERVED) == 10
    assert outcomes.count(billing_pb2.RESERVE_OUTCOME_INSUFFICIENT_CREDITS) == 40
    assert all(response.available_credits >= 0 for response in responses)
    assert await billing.ledger.balance(ACCOUNT) == Balance(0, 0, 100)
    reserves = [e for e in await billing.ledger.entries(ACCOUNT) if e.kind == "reserve"]
    assert len(reserves) == 10


async def test_check_funds_compares_the_minimum_charge_with_the_balance(
    billing: BillingHarness,
) -> None:
    # No durations: the minimum charge, 5 s at 720p = 20 credits.
    usage = billing_pb2.Usage(spec=image_usage(0).spec)
    usage.spec.resolution = jobs_pb2.RESOLUTION_720P
    await grant(billing, 19)
    request = billing_pb2.CheckFundsRequest(account_id=ACCOUNT, usage=usage)
    short = await billing.stub.CheckFunds(request)
    assert (short.sufficient, short.credits, short.available_credits) == (False, 20, 19)
    await grant(billing, 1)
    enough = await billing.stub.CheckFunds(request)
    assert (enough.sufficient, enough.available_credits) == (True, 20)
    # Nothing is held by a check.
    balance = await billing.stub.GetBalance(billing_pb2.GetBalanceRequest(account_id=ACCOUNT))
    assert (balance.api_credits, balance.reserved_credits) == (20, 0)
