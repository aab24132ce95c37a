"""BillingService over gRPC: quotes, balances, grants, reservations and checkout."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from billing_service import pricing
from billing_service.checkout import (
    Checkout,
    InvalidSignature,
    PaymentsDisabled,
    ProviderUnavailable,
    UnknownPack,
)
from billing_service.ledger import Ledger, ReserveOutcome
from billing_service.packs import CreditPack
from billing_service.store import WALLET_API, WALLET_USER, Balance, Entry
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync_common.job_spec import RESOLUTION_NAMES, model_name, resolution_name
from lipsync_common.logs import job_context

_WALLETS = {
    billing_pb2.WALLET_UNSPECIFIED: WALLET_API,
    billing_pb2.WALLET_API: WALLET_API,
    billing_pb2.WALLET_USER: WALLET_USER,
}
_OUTCOMES = {
    ReserveOutcome.RESERVED: billing_pb2.RESERVE_OUTCOME_RESERVED,
    ReserveOutcome.INSUFFICIENT_CREDITS: billing_pb2.RESERVE_OUTCOME_INSUFFICIENT_CREDITS,
    ReserveOutcome.ALREADY_SETTLED: billing_pb2.RESERVE_OUTCOME_ALREADY_SETTLED,
}
MAX_REASON_LENGTH = 500
DEFAULT_USAGE_PAGE = 50
MAX_USAGE_PAGE = 200


def encode_cursor(entry_id: int) -> str:
    """An opaque cursor naming the last entry of a page."""
    return base64.urlsafe_b64encode(f"e{entry_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The entry id a cursor names; None for the first page; ValueError if junk."""
    if not cursor:
        return None
    text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    if not text.startswith("e") or not text[1:].isdigit():
        raise ValueError(cursor)
    return int(text[1:])


def usage_entry(entry: Entry) -> billing_pb2.UsageEntry:
    created_at = Timestamp()
    created_at.FromNanoseconds(round(entry.created_at * 1e9))
    return billing_pb2.UsageEntry(
        id=entry.id,
        kind=entry.kind,
        wallet=entry.wallet,
        job_id=entry.job_id or "",
        model=entry.model,
        billed_seconds=entry.billed_seconds or 0,
        resolution=entry.resolution,
        credits=entry.amount,
        reason=entry.reason,
        created_at=created_at,
    )


# The FAILED_PRECONDITION / INVALID_ARGUMENT details the gateway maps to its problems.
PAYMENTS_DISABLED = "payments_disabled"
INVALID_SIGNATURE = "invalid_signature"


def pricing_message(
    packs: Sequence[CreditPack], checkout_enabled: bool = False
) -> billing_pb2.GetPricingResponse:
    return billing_pb2.GetPricingResponse(
        checkout_enabled=checkout_enabled,
        rates=[
            billing_pb2.Rate(resolution=RESOLUTION_NAMES[resolution], credits_per_second=rate)
            for resolution, rate in pricing.CREDITS_PER_SECOND.items()
        ],
        minimum_seconds=pricing.MIN_BILLED_SECONDS,
        maximum_seconds=pricing.MAX_BILLED_SECONDS,
        formula=pricing.FORMULA,
        credit_packs=[
            billing_pb2.CreditPack(
                price_usd=pack.price_usd,
                credits=pack.credits,
                price_per_credit_usd=pack.price_per_credit_usd,
            )
            for pack in packs
        ],
    )


def balance_message(balance: Balance) -> billing_pb2.GetBalanceResponse:
    return billing_pb2.GetBalanceResponse(
        api_credits=balance.api_credits,
        user_credits=balance.user_credits,
        reserved_credits=balance.reserved_credits,
    )


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    # context.abort raises; this line only tells the type checker so.
    raise AssertionError("unreachable")


async def _price(usage: billing_pb2.Usage, context: grpc.aio.ServicerContext) -> pricing.Price:
    try:
        return pricing.price_usage(usage)
    except pricing.PricingError as exc:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))


async def _require(context: grpc.aio.ServicerContext, **fields: str) -> None:
    for name, value in fields.items():
        if not value:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{name} is required")


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(
        self,
        ledger: Ledger,
        packs: Sequence[CreditPack] = (),
        checkout: Checkout | None = None,
    ) -> None:
        self._ledger = ledger
        self._checkout = checkout
        self._pricing = pricing_message(packs, checkout is not None and checkout.enabled)

    async def GetPricing(
        self, request: billing_pb2.GetPricingRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GetPricingResponse:
        return self._pricing

    async def ListUsage(
        self, request: billing_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListUsageResponse:
        await _require(context, account_id=request.account_id)
        if request.limit < 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limit must be positive")
        limit = min(request.limit or DEFAULT_USAGE_PAGE, MAX_USAGE_PAGE)
        try:
            before_id = decode_cursor(request.cursor)
        except ValueError:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "cursor is not valid")
        # One more than asked tells whether another page exists.
        entries = await self._ledger.usage(
            request.account_id, limit + 1, before_id, include_zero=request.include_zero
        )
        page = entries[:limit]
        more = len(entries) > limit
        return billing_pb2.ListUsageResponse(
            entries=[usage_entry(entry) for entry in page],
            next_cursor=encode_cursor(page[-1].id) if more else "",
        )

    async def Quote(
        self, request: billing_pb2.QuoteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.QuoteResponse:
        price = await _price(request.usage, context)
        return billing_pb2.QuoteResponse(billed_seconds=price.billed_seconds, credits=price.credits)

    async def CheckFunds(
        self, request: billing_pb2.CheckFundsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CheckFundsResponse:
        await _require(context, account_id=request.account_id)
        price = await _price(request.usage, context)
        balance = await self._ledger.balance(request.account_id)
        return billing_pb2.CheckFundsResponse(
            sufficient=balance.api_credits >= price.credits,
            credits=price.credits,
            available_credits=balance.api_credits,
        )

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GetBalanceResponse:
        await _require(context, account_id=request.account_id)
        return balance_message(await self._ledger.balance(request.account_id))

    async def GrantCredits(
        self, request: billing_pb2.GrantCreditsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GrantCreditsResponse:
        await _require(context, account_id=request.account_id)
        if request.amount <= 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "amount must be positive")
        wallet = _WALLETS.get(request.wallet)
        if wallet is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unknown wallet")
        if len(request.reason) > MAX_REASON_LENGTH:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"reason is longer than {MAX_REASON_LENGTH} characters",
            )
        balance = await self._ledger.grant(
            request.account_id, request.amount, wallet, request.reason
        )
        return billing_pb2.GrantCreditsResponse(balance=balance_message(balance))

    async def Reserve(
        self, request: billing_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReserveResponse:
        await _require(context, job_id=request.job_id, account_id=request.account_id)
        price = await _price(request.usage, context)
        with job_context(request.job_id):
            result = await self._ledger.reserve(
                job_id=request.job_id,
                account_id=request.account_id,
                credits=price.credits,
                billed_seconds=price.billed_seconds,
                model=model_name(request.usage.spec),
                resolution=resolution_name(request.usage.spec),
            )
        return billing_pb2.ReserveResponse(
            outcome=_OUTCOMES[result.outcome],
            billed_seconds=result.billed_seconds,
            credits=result.credits,
            available_credits=result.available_credits,
        )

    async def CreateCheckoutSession(
        self, request: billing_pb2.CreateCheckoutSessionRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreateCheckoutSessionResponse:
        await _require(
            context,
            account_id=request.account_id,
            success_url=request.success_url,
            cancel_url=request.cancel_url,
        )
        if self._checkout is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, PAYMENTS_DISABLED)
        try:
            started = await self._checkout.start(
                request.account_id, request.pack, request.success_url, request.cancel_url
            )
        except PaymentsDisabled:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, PAYMENTS_DISABLED)
        except UnknownPack as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ProviderUnavailable:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "Stripe is unavailable")
        return billing_pb2.CreateCheckoutSessionResponse(
            checkout_url=started.checkout_url, session_id=started.session_id
        )

    async def HandleStripeWebhook(
        self, request: billing_pb2.HandleStripeWebhookRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.HandleStripeWebhookResponse:
        if self._checkout is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, PAYMENTS_DISABLED)
        try:
            outcome = await self._checkout.handle_webhook(request.payload, request.signature)
        except PaymentsDisabled:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, PAYMENTS_DISABLED)
        except InvalidSignature:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, INVALID_SIGNATURE)
        return billing_pb2.HandleStripeWebhookResponse(
            event_type=outcome.event_type, session_id=outcome.session_id, granted=outcome.granted
        )
