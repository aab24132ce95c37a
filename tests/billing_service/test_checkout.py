"""Stripe Checkout in billing_service: sessions on a real localstripe, webhooks by signature.

Sessions are created with the official `stripe` library against localstripe
(tests/localstripe_server.py). Webhook payloads here are signed the way Stripe
signs them (HMAC-SHA256 of `<t>.<body>`), so each rule of the handler can be
checked alone: a good signature, a repeat, a forgery, a changed body, a stale
timestamp, an unpaid session. tests/gateway/test_routes_billing_checkout.py
lets localstripe itself sign and deliver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from billing_service.checkout import (
    Checkout,
    InvalidSignature,
    PaymentsDisabled,
    StripeSettings,
    UnknownPack,
    grant_key,
)
from billing_service.ledger import Ledger
from billing_service.packs import DEFAULT_PACKS, parse_packs
from billing_service.servicer import BillingServicer
from billing_service.store import WALLET_API
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync_common.config import ConfigError
from tests.localstripe_server import SECRET_KEY, WEBHOOK_SECRET, LocalStripe, running_localstripe

PACKS = parse_packs(DEFAULT_PACKS)
ACCOUNT = "acct-buyer"


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def session_event(
    session_id: str = "cs_test_1",
    *,
    event_type: str = "checkout.session.completed",
    payment_status: str = "paid",
    account_id: str = ACCOUNT,
    credits: str = "1000",
    event_id: str = "evt_1",
) -> bytes:
    session: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": payment_status,
        "status": "complete",
        "metadata": {"account_id": account_id, "pack": "0", "credits": credits},
    }
    event = {"id": event_id, "object": "event", "type": event_type, "data": {"object": session}}
    return json.dumps(event, indent=2).encode()


@pytest.fixture
async def localstripe() -> AsyncIterator[LocalStripe]:
    async with running_localstripe() as running:
        yield running


def stripe_settings(localstripe: LocalStripe | None = None) -> StripeSettings:
    return StripeSettings(
        secret_key=SECRET_KEY,
        webhook_secret=WEBHOOK_SECRET,
        api_base=localstripe.base_url if localstripe else "http://127.0.0.1:9",
    )


@pytest.fixture
async def checkout(ledger: Ledger) -> AsyncIterator[Checkout]:
    opened = Checkout(stripe_settings(), ledger, PACKS)
    yield opened
    await opened.close()


async def api_credits(ledger: Ledger, account_id: str = ACCOUNT) -> int:
    return (await ledger.balance(account_id)).api_credits


async def test_a_session_sells_one_pack_with_the_account_in_its_metadata(
    ledger: Ledger, localstripe: LocalStripe
) -> None:
    checkout = Checkout(stripe_settings(localstripe), ledger, PACKS)
    try:
        started = await checkout.start(ACCOUNT, 1, "http://127.0.0.1/ok", "http://127.0.0.1/no")
    finally:
        await checkout.close()
    assert started.session_id.startswith("cs_test_")
    assert started.checkout_url.startswith(localstripe.base_url)
    session = await localstripe.session(started.session_id)
    assert session["amount_total"] == 5000 and session["currency"] == "usd"
    assert session["metadata"] == {"account_id": ACCOUNT, "pack": "1", "credits": "5500"}
    assert session["payment_status"] == "unpaid"
    assert session["success_url"] == "http://127.0.0.1/ok"
    assert await api_credits(ledger) == 0


async def test_an_unknown_pack_is_refused_before_stripe_is_called(checkout: Checkout) -> None:
    # The API base is a closed port: reaching Stripe would fail differently.
    for pack in (-1, len(PACKS)):
        with pytest.raises(UnknownPack):
            await checkout.start(ACCOUNT, pack, "http://127.0.0.1/ok", "http://127.0.0.1/no")


async def test_a_paid_session_grants_its_pack_once_however_often_it_is_told(
    checkout: Checkout, ledger: Ledger
) -> None:
    completed = session_event()
    first = await checkout.handle_webhook(completed, sign(completed))
    assert first.granted and first.session_id == "cs_test_1"
    assert await api_credits(ledger) == 1000
    # Stripe repeats the event, and a later async_payment_succeeded names the same session.
    again = await checkout.handle_webhook(completed, sign(completed))
    late = session_event(event_type="checkout.session.async_payment_succeeded", event_id="evt_2")
    reordered = await checkout.handle_webhook(late, sign(late))
    assert not again.granted and not reordered.granted
    assert await api_credits(ledger) == 1000
    grants = [entry for entry in await ledger.entries(ACCOUNT) if entry.kind == "grant"]
    assert [(g.amount, g.wallet, g.grant_key) for g in grants] == [
        (1000, WALLET_API, grant_key("cs_test_1"))
    ]


async def test_forged_changed_or_stale_events_are_refused_and_change_nothing(
    checkout: Checkout, ledger: Ledger
) -> None:
    completed = session_event()
    forged = sign(completed, secret="whsec_someone_else")
    changed = completed.replace(b'"1000"', b'"999999"')
    stale = sign(completed, at=int(time.time()) - 3600)
    for payload, signature in (
        (completed, forged),
        (changed, sign(completed)),
        (completed, stale),
        (completed, ""),
        (completed, "t=1,v1=00"),
        (b"\xff\xfe", sign(b"\xff\xfe")),
    ):
        with pytest.raises(InvalidSignature):
            await checkout.handle_webhook(payload, signature)
    assert await api_credits(ledger) == 0


async def test_unpaid_sessions_and_other_events_grant_nothing(
    checkout: Checkout, ledger: Ledger
) -> None:
    unpaid = session_event(payment_status="unpaid")
    outcome = await checkout.handle_webhook(unpaid, sign(unpaid))
    assert not outcome.granted and outcome.session_id == "cs_test_1"
    other = session_event(event_type="payment_intent.succeeded", event_id="evt_3")
    assert (await checkout.handle_webhook(other, sign(other))).event_type == (
        "payment_intent.succeeded"
    )
    foreign = session_event("cs_test_2", account_id="")
    assert not (await checkout.handle_webhook(foreign, sign(foreign))).granted
    junk = session_event("cs_test_3", credits="lots")
    assert not (await checkout.handle_webhook(junk, sign(junk))).granted
    for odd in (b"[]", b'{"type": "checkout.session.completed", "data": [1]}', b'"x"'):
        assert not (await checkout.handle_webhook(odd, sign(odd))).granted
    assert await api_credits(ledger) == 0
    # The unpaid session clears later: now it is granted, once.
    cleared = session_event(event_type="checkout.session.async_payment_succeeded")
    assert (await checkout.handle_webhook(cleared, sign(cleared))).granted
    assert await api_credits(ledger) == 1000


def test_a_stripe_key_without_a_webhook_secret_stops_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIPSYNC_STRIPE_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("LIPSYNC_STRIPE_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError):
        StripeSettings.from_env()
    monkeypatch.setenv("LIPSYNC_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("LIPSYNC_STRIPE_API_BASE", "http://127.0.0.1:1234/")
    settings = StripeSettings.from_env()
    assert settings.api_base == "http://127.0.0.1:1234"
    assert SECRET_KEY not in repr(settings) and WEBHOOK_SECRET not in repr(settings)


async def test_without_a_key_checkout_is_disabled(ledger: Ledger) -> None:
    checkout = Checkout(StripeSettings("", ""), ledger, PACKS)
    assert not checkout.enabled
    with pytest.raises(PaymentsDisabled):
        await checkout.start(ACCOUNT, 0, "http://127.0.0.1/ok", "http://127.0.0.1/no")
    with pytest.raises(PaymentsDisabled):
        await checkout.handle_webhook(session_event(), sign(session_event()))


async def serve(servicer: BillingServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    return server, addr


async def test_the_rpcs_answer_with_the_codes_the_gateway_maps(
    ledger: Ledger, localstripe: LocalStripe, tmp_path: Path
) -> None:
    checkout = Checkout(stripe_settings(localstripe), ledger, PACKS)
    enabled, enabled_addr = await serve(BillingServicer(ledger, PACKS, checkout))
    disabled, disabled_addr = await serve(BillingServicer(ledger, PACKS))
    try:
        async with (
            grpc.aio.insecure_channel(enabled_addr) as on,
            grpc.aio.insecure_channel(disabled_addr) as off,
        ):
            stub, off_stub = (
                billing_pb2_grpc.BillingServiceStub(on),
                (billing_pb2_grpc.BillingServiceStub(off)),
            )
            assert (await stub.GetPricing(billing_pb2.GetPricingRequest())).checkout_enabled
            assert not (await off_stub.GetPricing(billing_pb2.GetPricingRequest())).checkout_enabled
            request = billing_pb2.CreateCheckoutSessionRequest(
                account_id=ACCOUNT, pack=2, success_url="http://a/ok", cancel_url="http://a/no"
            )
            started = await stub.CreateCheckoutSession(request)
            assert started.session_id.startswith("cs_test_")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await off_stub.CreateCheckoutSession(request)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.value.details() == "payments_disabled"
            request.pack = 7
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.CreateCheckoutSession(request)
            assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            payload = session_event(started.session_id, credits="12000")
            forged = billing_pb2.HandleStripeWebhookRequest(
                payload=payload, signature=sign(payload, "whsec_x")
            )
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.HandleStripeWebhook(forged)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad.value.details() == "invalid_signature"
            good = billing_pb2.HandleStripeWebhookRequest(payload=payload, signature=sign(payload))
            handled = await stub.HandleStripeWebhook(good)
            assert handled.granted and handled.event_type == "checkout.session.completed"
            assert not (await stub.HandleStripeWebhook(good)).granted
    finally:
        await enabled.stop(None)
        await disabled.stop(None)
        await checkout.close()
    assert await api_credits(ledger) == 12000
