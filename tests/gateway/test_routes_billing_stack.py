"""Buying a pack on the real stack: every service a process, Stripe a localstripe.

The stack of tests/integration/harness.py is started with
LIPSYNC_STRIPE_SECRET_KEY, LIPSYNC_STRIPE_WEBHOOK_SECRET and
LIPSYNC_STRIPE_API_BASE pointing at localstripe, as an operator configures it,
so what this adds to tests/gateway/test_routes_billing_checkout.py is the
wiring: billing_service reads the settings at start-up, pricing says
`checkout_enabled`, and a person who signs up, buys the first pack and pays on
localstripe's page ends up with its credits once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import running_stack, stack_env
from tests.localstripe_server import SECRET_KEY, WEBHOOK_SECRET, running_localstripe

pytestmark = pytest.mark.integration


async def test_a_new_person_buys_a_pack_on_the_real_stack(tmp_path: Path) -> None:
    async with running_localstripe() as stripe:
        env = stack_env(tmp_path)
        env.update(
            {
                "LIPSYNC_STRIPE_SECRET_KEY": SECRET_KEY,
                "LIPSYNC_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "LIPSYNC_STRIPE_API_BASE": stripe.base_url,
            }
        )
        with running_stack(tmp_path, env) as stack:
            await stripe.register_webhook(f"{stack.http_url}/api/v1/billing/stripe-webhook")
            async with httpx.AsyncClient(base_url=stack.http_url, timeout=30.0) as http:
                pricing = (await http.get("/api/v1/pricing")).json()
                assert pricing["checkout_enabled"] is True
                credentials = {"email": f"buyer-{uuid.uuid4().hex[:8]}@example.com"}
                credentials["password"] = "correct horse battery"
                signup = await http.post("/api/v1/auth/signup", json=credentials)
                assert signup.status_code == 201, signup.text
                login = await http.post("/api/v1/auth/login", json=credentials)
                session = {"Authorization": f"Bearer {login.json()['token']}"}

                started = await http.post(
                    "/api/v1/billing/checkout", json={"pack": 0}, headers=session
                )
                assert started.status_code == 200, started.text
                checkout = started.json()
                assert checkout["checkout_url"].startswith(stripe.base_url)
                paid = await stripe.pay(checkout["session_id"])
                assert paid.status_code == 200, paid.text

                expected = pricing["credit_packs"][0]["credits"]
                deadline = time.monotonic() + 15
                while True:
                    balance = (await http.get("/api/v1/balance", headers=session)).json()
                    if balance["api_credits"] == expected or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                assert balance == {"api_credits": expected, "user_credits": 0}

                [event] = [
                    e
                    for e in await stripe.events("checkout.session.completed")
                    if e["data"]["object"]["id"] == checkout["session_id"]
                ]
                await stripe.resend(event["id"])
                again = (await http.get("/api/v1/balance", headers=session)).json()
                assert again["api_credits"] == expected
                usage = (await http.get("/api/v1/usage", headers=session)).json()["data"]
                assert [(u["kind"], u["credits"]) for u in usage] == [("grant", expected)]
