"""localstripe on a free loopback port, extended with the Checkout Sessions the platform calls.

localstripe (PyPI) is a stateful Stripe server: customers, payment methods
with Stripe's test cards, payment intents, charges, events, and webhooks signed
exactly as Stripe signs them (`POST /_config/webhooks/{id}` registers a URL and
a secret). It has no Checkout Sessions, so this module imports its aiohttp
application and adds, in-process, without touching site-packages:

* `POST /v1/checkout/sessions` and `GET /v1/checkout/sessions/{id}`, as the
  `stripe` library calls them (form-encoded, `cs_test_...` ids, `url`);
* `GET /_config/checkout/{id}`: the session's `url`, a small payment page (card
  number, Pay, Cancel) for a browser;
* `POST /_config/checkout/{id}/pay`: what the buyer does on that page. It
  creates a card payment method (`number`, default 4242 4242 4242 4242) and a
  payment intent for the session's amount and confirms it, through
  localstripe's own objects, so a declined test card is declined; then the
  session is `complete`/`paid` and localstripe sends the signed
  `checkout.session.completed`. With `delayed=true` the session completes
  unpaid (a bank debit still clearing) and the event says `payment_status:
  unpaid`; `POST /_config/checkout/{id}/settle` later pays it and sends
  `checkout.session.async_payment_succeeded`, as Stripe does;
  A form post (the page's Pay) is answered with a redirect to `success_url`;
* `POST /_config/events/{id}/resend`: delivers a stored event again to every
  registered webhook, signed again, and answers once the deliveries are done
  (Stripe's "resend"), so a test can deliver the same event twice more.

The added paths sit under `/_config/`, which localstripe's auth middleware
lets through without a key, as Stripe's own page and dashboard need none.
Everything else is localstripe's own. Run `python -m tests.localstripe_server
--port N`; it listens on 127.0.0.1 only and keeps its store in memory
(localstripe would otherwise write /tmp/localstripe.pickle, shared by parallel
runs).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from localstripe import resources, server, webhooks
from localstripe.errors import UserError
from localstripe.resources import Event, PaymentIntent, PaymentMethod, StripeObject, store

DEFAULT_CARD = "4242424242424242"
# localstripe declines charges to this test card, as Stripe does.
DECLINED_CARD = "4000000000000341"


class CheckoutSession(StripeObject):
    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(
        self,
        base_url: str,
        mode: str | None = None,
        line_items: list[dict[str, Any]] | None = None,
        success_url: str | None = None,
        cancel_url: str | None = None,
        metadata: dict[str, str] | None = None,
        client_reference_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs))
        try:
            assert mode == "payment"
            assert isinstance(success_url, str) and success_url.startswith("http")
            assert isinstance(cancel_url, str) and cancel_url.startswith("http")
            assert isinstance(line_items, list) and line_items
            amount, currency = 0, None
            for item in line_items:
                price = item["price_data"]
                unit = resources.try_convert_to_int(price["unit_amount"])
                quantity = resources.try_convert_to_int(item.get("quantity", 1))
                assert isinstance(unit, int) and unit > 0
                assert isinstance(quantity, int) and quantity > 0
                assert isinstance(price["currency"], str)
                assert currency in (None, price["currency"])
                currency = price["currency"]
                amount += unit * quantity
        except (AssertionError, KeyError, TypeError):
            raise UserError(400, "Bad request") from None
        # All exceptions must be raised before this point (localstripe's rule: it stores).
        super().__init__()
        self.mode = mode
        self.amount_total = amount
        self.currency = currency
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.metadata = metadata or {}
        self.client_reference_id = client_reference_id
        self.status = "open"
        self.payment_status = "unpaid"
        self.payment_intent: str | None = None
        self.url = f"{base_url}/_config/checkout/{self.id}"

    def _charge(self, number: str) -> None:
        """Pay the session's amount with a test card, through localstripe's own objects."""
        method = PaymentMethod(
            type="card", card={"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        )
        intent = PaymentIntent(
            amount=self.amount_total,
            currency=self.currency,
            payment_method=method.id,
            metadata={"checkout_session": self.id},
        )
        # Raises localstripe's 402 for a declined card, as Stripe's page would refuse it.
        intent._confirm(on_failure_now=intent._report_failure)
        if intent.status != "succeeded":
            raise UserError(402, f"payment {intent.status}")
        self.payment_intent = intent.id
        self.payment_status = "paid"


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def create_session(request: web.Request) -> web.Response:
    data = await server.get_post_data(request) or {}
    data.pop("expand", None)
    session = CheckoutSession(_base_url(request), **data)
    return server.json_response(session._export())


async def retrieve_session(request: web.Request) -> web.Response:
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    return server.json_response(session._export())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>localstripe Checkout</title></head>
<body><main><h1>Pay {amount} {currency}</h1>
<form method="post" action="/_config/checkout/{id}/pay">
<label>Card number <input name="number" value="{card}" autocomplete="off"></label>
<button type="submit">Pay</button></form>
<p><a href="{cancel_url}">Cancel</a></p></main></body></html>
"""


async def session_page(request: web.Request) -> web.Response:
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    page = _PAGE.format(
        amount=f"{session.amount_total / 100:.2f}",
        currency=html.escape(str(session.currency).upper()),
        id=html.escape(session.id),
        card=DEFAULT_CARD,
        cancel_url=html.escape(str(session.cancel_url)),
    )
    return web.Response(text=page, content_type="text/html")


async def pay_session(request: web.Request) -> web.StreamResponse:
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    if session.status != "open":
        raise UserError(400, "This Checkout Session is no longer open")
    data = await server.get_post_data(request) or {}
    if resources.try_convert_to_bool(data.get("delayed", False)) is not True:
        session._charge(str(data.get("number", DEFAULT_CARD)))
    session.status = "complete"
    webhooks.schedule_webhook(Event("checkout.session.completed", session))
    if request.content_type == "application/x-www-form-urlencoded":
        # The page's form: back to the platform, as Stripe's page does.
        target = str(session.success_url).replace("{CHECKOUT_SESSION_ID}", session.id)
        raise web.HTTPSeeOther(target)
    return server.json_response(session._export())


async def settle_session(request: web.Request) -> web.Response:
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    if session.status != "complete" or session.payment_status == "paid":
        raise UserError(400, "Only a completed, unpaid session can be settled")
    data = await server.get_post_data(request) or {}
    session._charge(str(data.get("number", DEFAULT_CARD)))
    webhooks.schedule_webhook(Event("checkout.session.async_payment_succeeded", session))
    return server.json_response(session._export())


async def resend_event(request: web.Request) -> web.Response:
    event = Event._api_retrieve(request.match_info["id"])
    # localstripe's own signing and delivery; it returns once every webhook was called.
    await webhooks._send_webhook(event)
    return server.json_response(event._export())


def application() -> web.Application:
    app: web.Application = server.app
    # The /_ paths pass localstripe's auth middleware only under /_config/; these are
    # the buyer's page and the dashboard, which need no key either.
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    app.router.add_get("/_config/checkout/{id}", session_page)
    app.router.add_post("/_config/checkout/{id}/pay", pay_session)
    app.router.add_post("/_config/checkout/{id}/settle", settle_session)
    app.router.add_post("/_config/events/{id}/resend", resend_event)
    return app


# Any key of the form sk_... is accepted by localstripe.
SECRET_KEY = "sk_test_lipsync"
WEBHOOK_SECRET = "whsec_localstripe_lipsync_tests"
_REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStripe:
    """A running localstripe, and what a buyer and Stripe's dashboard do there."""

    base_url: str
    http: httpx.AsyncClient

    async def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """Have localstripe sign and send every event to `url`."""
        response = await self.http.post(
            "/_config/webhooks/platform", data={"url": url, "secret": secret}
        )
        response.raise_for_status()

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/checkout/sessions/{session_id}")
        response.raise_for_status()
        return dict(response.json())

    async def pay(
        self, session_id: str, number: str = DEFAULT_CARD, *, delayed: bool = False
    ) -> httpx.Response:
        return await self.http.post(
            f"/_config/checkout/{session_id}/pay", json={"number": number, "delayed": delayed}
        )

    async def settle(self, session_id: str) -> httpx.Response:
        return await self.http.post(f"/_config/checkout/{session_id}/settle", json={})

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        response = await self.http.get("/v1/events", params={"type": event_type})
        response.raise_for_status()
        return list(response.json()["data"])

    async def resend(self, event_id: str) -> None:
        """Deliver a stored event again; returns once it has been delivered."""
        response = await self.http.post(f"/_config/events/{event_id}/resend")
        response.raise_for_status()


@asynccontextmanager
async def running_localstripe() -> AsyncIterator[LocalStripe]:
    """localstripe (with Checkout Sessions) as a subprocess on a free loopback port."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.localstripe_server",
        "--port",
        str(port),
        cwd=_REPO,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=10.0
        ) as http:
            for _ in range(200):
                if process.returncode is not None:
                    raise RuntimeError(f"localstripe exited with {process.returncode}")
                try:
                    await http.get("/v1/customers")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("localstripe did not start within 10 s")
            yield LocalStripe(base_url, http)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Keep the store in memory: parallel runs would share localstripe's pickle file.
    store.dump_to_disk = lambda: None
    web.run_app(application(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
