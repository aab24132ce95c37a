"""ListUsage pages the ledger newest first; GetPricing and the credit packs."""

from __future__ import annotations

import grpc
import pytest

from billing_service.packs import parse_packs
from billing_service.servicer import decode_cursor, encode_cursor
from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.config import ConfigError
from tests.billing_service.billing_harness import BillingHarness, image_usage


async def test_usage_lists_entries_newest_first_with_job_details(
    billing: BillingHarness,
) -> None:
    await billing.ledger.grant("acct", 100, "api", "welcome")
    await billing.stub.Reserve(
        billing_pb2.ReserveRequest(
            job_id="job-1",
            account_id="acct",
            usage=image_usage(3.2, jobs_pb2.RESOLUTION_720P),
        )
    )
    await billing.ledger.capture("job-1")
    page = await billing.stub.ListUsage(billing_pb2.ListUsageRequest(account_id="acct"))
    assert [entry.kind for entry in page.entries] == ["capture", "reserve", "grant"]
    capture = page.entries[0]
    assert (capture.job_id, capture.model, capture.resolution) == ("job-1", "lipsync-image", "720p")
    assert (capture.billed_seconds, capture.credits, capture.wallet) == (5, 20, "api")
    assert page.entries[2].reason == "welcome"
    assert page.next_cursor == ""


async def test_usage_pages_with_an_opaque_cursor(billing: BillingHarness) -> None:
    for amount in range(1, 6):
        await billing.ledger.grant("acct", amount, "api", f"grant {amount}")
    await billing.ledger.grant("other", 7, "api", "not mine")
    seen: list[int] = []
    cursor = ""
    while True:
        page = await billing.stub.ListUsage(
            billing_pb2.ListUsageRequest(account_id="acct", limit=2, cursor=cursor)
        )
        seen += [entry.credits for entry in page.entries]
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("cursor", ["junk!", "eA", "bm9wZQ"])
async def test_usage_refuses_a_junk_cursor(billing: BillingHarness, cursor: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await billing.stub.ListUsage(billing_pb2.ListUsageRequest(account_id="a", cursor=cursor))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(1234)) == 1234
    assert decode_cursor("") is None


async def test_pricing_lists_rates_limits_and_packs(billing: BillingHarness) -> None:
    prices = await billing.stub.GetPricing(billing_pb2.GetPricingRequest())
    assert {r.resolution: r.credits_per_second for r in prices.rates} == {"480p": 2, "720p": 4}
    assert (prices.minimum_seconds, prices.maximum_seconds) == (5, 600)
    assert "ceil(duration_seconds)" in prices.formula
    first = prices.credit_packs[0]
    assert (first.price_usd, first.credits, first.price_per_credit_usd) == (10, 1000, 0.01)


def test_packs_are_sorted_by_price() -> None:
    packs = parse_packs('[{"price_usd": 50, "credits": 6000}, {"price_usd": 5, "credits": 400}]')
    assert [pack.credits for pack in packs] == [400, 6000]
    assert packs[0].price_per_credit_usd == 0.0125


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "{}",
        "[1]",
        '[{"price_usd": 0, "credits": 10}]',
        '[{"price_usd": 10, "credits": 1.5}]',
        '[{"price_usd": true, "credits": 10}]',
    ],
)
def test_malformed_packs_are_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_packs(raw)


async def test_usage_leaves_out_zero_entries_unless_asked(billing: BillingHarness) -> None:
    # A job refused for lack of credits never held any: its id is closed with a zero release.
    await billing.ledger.grant("acct", 4, "api", "too little")
    await billing.ledger.release("job-refused", "acct")
    customer = await billing.stub.ListUsage(billing_pb2.ListUsageRequest(account_id="acct"))
    assert [(entry.kind, entry.credits) for entry in customer.entries] == [("grant", 4)]
    operator = await billing.stub.ListUsage(
        billing_pb2.ListUsageRequest(account_id="acct", include_zero=True)
    )
    assert [(entry.kind, entry.credits) for entry in operator.entries] == [
        ("release", 0),
        ("grant", 4),
    ]
