"""Buying credit packs with Stripe Checkout, through the official `stripe` library.

The Stripe calls live here, in billing_service, not in the gateway: a payment
ends in a ledger grant, which only this service writes, and the gateway keeps
no secret but the ones it needs itself. The gateway forwards the webhook's raw
body and its `Stripe-Signature` header untouched; the signature covers those
exact bytes, so they are checked here, with the library, before anything is
read from them.

The rules:

* A Checkout Session sells one pack of the price list for its price in US
  cents. Its metadata holds the account, the pack's index and its credits:
  Stripe signs them back in every event, and a price list changed between
  checkout and payment does not change what a paid session gets.
* `checkout.session.completed` with `payment_status: paid` grants the pack's
  API credits; so does `checkout.session.async_payment_succeeded` (a delayed
  payment method that cleared later). The grant is keyed by the session id
  (`store.entries.grant_key`), so a repeated, reordered or concurrent
  delivery grants once.
* An unpaid session's event, and any other verified event, is answered and
  ignored: Stripe retries an event that is refused, for days.
* Configuration: LIPSYNC_STRIPE_SECRET_KEY enables checkout and needs
  LIPSYNC_STRIPE_WEBHOOK_SECRET (payments that are never granted must not be
  taken); the webhook secret alone still honours sessions created earlier.
  LIPSYNC_STRIPE_API_BASE points the library elsewhere (tests: localstripe).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import stripe

from billing_service.ledger import Ledger
from billing_service.packs import CreditPack
from billing_service.store import WALLET_API
from lipsync_common.config import ConfigError, env_str

log = logging.getLogger(__name__)

SECRET_KEY_ENV = "LIPSYNC_STRIPE_SECRET_KEY"
WEBHOOK_SECRET_ENV = "LIPSYNC_STRIPE_WEBHOOK_SECRET"
API_BASE_ENV = "LIPSYNC_STRIPE_API_BASE"
# Events whose paid session grants its pack.
GRANTING_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
GRANT_KEY_PREFIX = "stripe-checkout:"
# Seconds a signature's timestamp may be old: the library's default, as Stripe advises.
SIGNATURE_TOLERANCE_S = stripe.Webhook.DEFAULT_TOLERANCE
# Stripe answers in well under a second; a checkout that hangs is better refused.
STRIPE_TIMEOUT_S = 20.0


class PaymentsDisabled(Exception):
    """No Stripe key (or, for webhooks, no webhook secret) is configured."""


class UnknownPack(ValueError):
    """The pack index names no pack of the price list."""


class InvalidSignature(ValueError):
    """The webhook is not signed by Stripe with our secret, or its body was changed."""


class ProviderUnavailable(Exception):
    """Stripe could not be reached, or answered with a transient error."""


@dataclass(frozen=True)
class StripeSettings:
    secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    # Empty: Stripe itself.
    api_base: str = ""

    @classmethod
    def from_env(cls) -> StripeSettings:
        settings = cls(
            secret_key=env_str(SECRET_KEY_ENV, ""),
            webhook_secret=env_str(WEBHOOK_SECRET_ENV, ""),
            api_base=env_str(API_BASE_ENV, "").rstrip("/"),
        )
        if settings.secret_key and not settings.webhook_secret:
            raise ConfigError(
                f"{SECRET_KEY_ENV} is set but {WEBHOOK_SECRET_ENV} is not: payments would be"
                " taken and never granted"
            )
        return settings


@dataclass(frozen=True)
class StartedCheckout:
    checkout_url: str
    session_id: str


@dataclass(frozen=True)
class WebhookOutcome:
    event_type: str
    session_id: str = ""
    granted: bool = False


def price_cents(pack: CreditPack) -> int:
    return round(pack.price_usd * 100)


def grant_key(session_id: str) -> str:
    return GRANT_KEY_PREFIX + session_id


class Checkout:
    """Creates Checkout Sessions and applies Stripe's signed events to the ledger."""

    def __init__(
        self, settings: StripeSettings, ledger: Ledger, packs: Sequence[CreditPack]
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._packs = list(packs)
        self._http: stripe.HTTPXClient | None = None
        self._client: stripe.StripeClient | None = None
        if settings.secret_key:
            self._http = stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_S)
            bases: dict[str, str] = {"api": settings.api_base} if settings.api_base else {}
            self._client = stripe.StripeClient(
                settings.secret_key,
                base_addresses=bases,  # type: ignore[arg-type]
                http_client=self._http,
                max_network_retries=2,
            )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close_async()

    async def start(
        self, account_id: str, pack_index: int, success_url: str, cancel_url: str
    ) -> StartedCheckout:
        if self._client is None:
            raise PaymentsDisabled()
        if not 0 <= pack_index < len(self._packs):
            raise UnknownPack(f"pack must be between 0 and {len(self._packs) - 1}")
        pack = self._packs[pack_index]
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": price_cents(pack),
                        "product_data": {"name": f"{pack.credits} API credits"},
                    },
                }
            ],
            "client_reference_id": account_id,
            "metadata": {
                "account_id": account_id,
                "pack": str(pack_index),
                "credits": str(pack.credits),
            },
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        try:
            session = await self._client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except stripe.APIError as exc:
            if (exc.http_status or 500) >= 500:
                raise ProviderUnavailable(str(exc)) from exc
            raise
        log.info(
            "checkout session created",
            extra={
                "fields": {
                    "account_id": account_id,
                    "session_id": session.id,
                    "credits": pack.credits,
                }
            },
        )
        return StartedCheckout(checkout_url=session.url or "", session_id=session.id)

    async def handle_webhook(self, payload: bytes, signature: str) -> WebhookOutcome:
        """Verify one delivery and apply it; raises InvalidSignature before reading it."""
        if not self._settings.webhook_secret:
            raise PaymentsDisabled()
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature, self._settings.webhook_secret, SIGNATURE_TOLERANCE_S
            )
            event = json.loads(text)
        except (UnicodeDecodeError, stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidSignature(str(exc) or "invalid signature") from None
        event_type = str(_member(event, "type") or "")
        if event_type not in GRANTING_EVENTS:
            return WebhookOutcome(event_type)
        session = _member(_member(event, "data"), "object")
        session_id = str(_member(session, "id") or "")
        if _member(session, "payment_status") != "paid":
            log.info(
                "checkout session not paid yet",
                extra={"fields": {"session_id": session_id, "event": event_type}},
            )
            return WebhookOutcome(event_type, session_id)
        metadata = _member(session, "metadata")
        account_id = str(_member(metadata, "account_id") or "")
        credits = _positive_int(_member(metadata, "credits"))
        if not session_id or not account_id or credits is None:
            # Signed by Stripe but not a session this platform created: nothing to grant.
            log.warning(
                "paid checkout session without our metadata",
                extra={"fields": {"session_id": session_id}},
            )
            return WebhookOutcome(event_type, session_id)
        result = await self._ledger.grant_once(
            grant_key(session_id),
            account_id,
            credits,
            WALLET_API,
            f"Stripe Checkout {session_id}",
        )
        return WebhookOutcome(event_type, session_id, granted=result.written)


def _member(value: object, name: str) -> Any:
    """`value[name]` of a JSON object; None for anything else (signed is not well-formed)."""
    return value.get(name) if isinstance(value, dict) else None


def _positive_int(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None
