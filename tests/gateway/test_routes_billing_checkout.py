"""Buying credits end to end: gateway, real billing_service, real localstripe.

The gateway listens on a real loopback port (localstripe must reach its
webhook), in front of the real BillingServicer over a SQLite ledger; auth and
jobs are the fakes of conftest. localstripe (tests/localstripe_server.py)
creates the Checkout Session the platform asks for, takes the payment, and
signs and sends `checkout.session.completed` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
import pytest
import uvicorn

from billing_service.checkout import Checkout, StripeSettings
from billing_service.ledger import Ledger
from billing_service.packs import DEFAULT_PACKS, parse_packs
from billing_service.servicer import BillingServicer
from gateway.app import create_app
from gateway.clients import Backends
from gateway.settings import GatewaySettings
from lipsync.billing.v1 import billing_pb2_grpc
from tests.billing_service.billing_harness import open_ledger
from tests.gateway.conftest import ACCOUNT, AUTH_HEADERS, SESSION_HEADERS, FakeStack
from tests.localstripe_server import (
    DECLINED_CARD,
    SECRET_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    running_localstripe,
)

PACKS = parse_packs(DEFAULT_PACKS)
WEBHOOK_PATH = "/api/v1/billing/stripe-webhook"


@dataclass
class Shop:
    http: httpx.AsyncClient
    base_url: str
    stripe: LocalStripe
    ledger: Ledger


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving_gateway(settings: GatewaySettings, backends: Backends) -> AsyncIterator[str]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(replace(settings, public_url=base_url), backends)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield base_url
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def billing_server(servicer: BillingServicer) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        async with grpc.aio.insecure_channel(addr) as channel:
            yield channel
    finally:
        await server.stop(None)


def backends_with(stack: FakeStack, billing: grpc.aio.Channel) -> Backends:
    return Backends.from_channels(
        grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['auth']}"),
        billing,
        grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['jobs']}"),
    )


@pytest.fixture
async def shop(stack: FakeStack, settings: GatewaySettings, tmp_path: Path) -> AsyncIterator[Shop]:
    async with running_localstripe() as stripe, open_ledger(tmp_path) as ledger:
        checkout = Checkout(
            StripeSettings(SECRET_KEY, WEBHOOK_SECRET, stripe.base_url), ledger, PACKS
        )
        async with billing_server(BillingServicer(ledger, PACKS, checkout)) as channel:
            backends = backends_with(stack, channel)
            async with serving_gateway(settings, backends) as base_url:
                await stripe.register_webhook(base_url + WEBHOOK_PATH)
                async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
                    yield Shop(http, base_url, stripe, ledger)
            await backends.close()
        await checkout.close()


async def balance(shop: Shop) -> int:
    response = await shop.http.get("/api/v1/balance", headers=AUTH_HEADERS)
    assert response.status_code == 200, response.text
    return int(response.json()["api_credits"])


async def wait_for_balance(shop: Shop, expected: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await balance(shop) != expected:
        assert time.monotonic() < deadline, f"balance never reached {expected}"
        await asyncio.sleep(0.1)


async def start_checkout(shop: Shop, pack: int) -> dict[str, str]:
    response = await shop.http.post(
        "/api/v1/billing/checkout", json={"pack": pack}, headers=SESSION_HEADERS
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


async def test_buying_a_pack_grants_it_once_whatever_stripe_repeats(shop: Shop) -> None:
    pricing = (await shop.http.get("/api/v1/pricing")).json()
    assert pricing["checkout_enabled"] is True
    started = await start_checkout(shop, 0)
    session = await shop.stripe.session(started["session_id"])
    assert started["checkout_url"] == session["url"]
    assert session["metadata"]["account_id"] == ACCOUNT
    assert session["success_url"] == (
        f"{shop.base_url}/console?checkout=success&session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert session["cancel_url"] == f"{shop.base_url}/console?checkout=canceled"
    page = await shop.stripe.http.get(started["checkout_url"])
    assert page.status_code == 200 and "Pay" in page.text

    paid = await shop.stripe.pay(started["session_id"])
    assert paid.status_code == 200, paid.text
    await wait_for_balance(shop, pricing["credit_packs"][0]["credits"])

    # The same signed event, delivered twice more by localstripe: nothing more.
    [event] = [
        e
        for e in await shop.stripe.events("checkout.session.completed")
        if e["data"]["object"]["id"] == started["session_id"]
    ]
    await shop.stripe.resend(event["id"])
    await shop.stripe.resend(event["id"])
    assert await balance(shop) == 1000

    # A forged event (right shape, wrong secret) and a changed body are refused.
    body = json.dumps(event).replace('"1000"', '"120000"').encode()
    timestamp = int(time.time())
    mac = hmac.new(b"whsec_forger", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    forged = await shop.http.post(
        WEBHOOK_PATH, content=body, headers={"Stripe-Signature": f"t={timestamp},v1={mac}"}
    )
    assert forged.status_code == 400
    problem = forged.json()
    assert problem["code"] == "invalid_signature"
    assert problem["type"] == f"{shop.base_url}/api/v1/errors#invalid_signature"
    unsigned = await shop.http.post(WEBHOOK_PATH, content=body)
    assert unsigned.status_code == 400
    assert await balance(shop) == 1000
    grants = [e for e in await shop.ledger.entries(ACCOUNT) if e.kind == "grant"]
    assert len(grants) == 1 and grants[0].reason == f"Stripe Checkout {started['session_id']}"


async def test_an_unpaid_session_grants_nothing_until_it_clears(shop: Shop) -> None:
    started = await start_checkout(shop, 1)
    delayed = await shop.stripe.pay(started["session_id"], delayed=True)
    assert delayed.json()["payment_status"] == "unpaid"
    [event] = [
        e
        for e in await shop.stripe.events("checkout.session.completed")
        if e["data"]["object"]["id"] == started["session_id"]
    ]
    await shop.stripe.resend(event["id"])
    assert await balance(shop) == 0
    settled = await shop.stripe.settle(started["session_id"])
    assert settled.status_code == 200, settled.text
    await wait_for_balance(shop, 5500)
    await shop.stripe.resend(event["id"])
    assert await balance(shop) == 5500


async def test_the_payment_page_sends_the_buyer_back_to_the_console(shop: Shop) -> None:
    started = await start_checkout(shop, 2)
    form = await shop.stripe.http.post(
        started["checkout_url"] + "/pay", data={"number": "4242424242424242"}
    )
    assert form.status_code == 303
    assert form.headers["location"] == (
        f"{shop.base_url}/console?checkout=success&session_id={started['session_id']}"
    )
    await wait_for_balance(shop, 12000)


async def test_a_declined_card_pays_nothing(shop: Shop) -> None:
    started = await start_checkout(shop, 0)
    declined = await shop.stripe.pay(started["session_id"], DECLINED_CARD)
    assert declined.status_code == 402
    session = await shop.stripe.session(started["session_id"])
    assert session["payment_status"] == "unpaid" and session["status"] == "open"
    assert await balance(shop) == 0


async def test_checkout_takes_a_session_and_a_pack_on_sale(shop: Shop) -> None:
    by_key = await shop.http.post(
        "/api/v1/billing/checkout", json={"pack": 0}, headers=AUTH_HEADERS
    )
    assert by_key.status_code == 403 and by_key.json()["code"] == "session_required"
    for body in ({"pack": 3}, {"pack": -1}, {"pack": "one"}, {}, {"pack": 0, "extra": 1}):
        response = await shop.http.post(
            "/api/v1/billing/checkout", json=body, headers=SESSION_HEADERS
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "invalid_parameter"
        assert response.json()["errors"][0]["field"] in ("pack", "extra")
    anonymous = await shop.http.post("/api/v1/billing/checkout", json={"pack": 0})
    assert anonymous.status_code == 401


async def test_without_stripe_checkout_is_503_payments_disabled(
    stack: FakeStack, settings: GatewaySettings, tmp_path: Path
) -> None:
    async with (
        open_ledger(tmp_path) as ledger,
        billing_server(BillingServicer(ledger, PACKS)) as channel,
    ):
        app = create_app(settings, backends_with(stack, channel))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            pricing = await http.get("/api/v1/pricing")
            assert pricing.json()["checkout_enabled"] is False
            response = await http.post(
                "/api/v1/billing/checkout", json={"pack": 0}, headers=SESSION_HEADERS
            )
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "payments_disabled"
            assert response.json()["type"] == "http://testserver/api/v1/errors#payments_disabled"
            webhook = await http.post(
                WEBHOOK_PATH, content=b"{}", headers={"Stripe-Signature": "x"}
            )
            assert webhook.status_code == 503
            assert webhook.json()["code"] == "payments_disabled"
