"""BillingService over gRPC: quotes, balances, grants and reservations."""

from __future__ import annotations

from typing import NoReturn

import grpc

from billing_service import pricing
from billing_service.ledger import Ledger, ReserveOutcome
from billing_service.store import WALLET_API, WALLET_USER, Balance
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync_common.jobjson import MODEL_NAMES
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
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def Quote(
        self, request: billing_pb2.QuoteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.QuoteResponse:
        price = await _price(request.usage, context)
        return billing_pb2.QuoteResponse(billed_seconds=price.billed_seconds, credits=price.credits)

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
                model=MODEL_NAMES.get(request.usage.model, ""),
                resolution=pricing.RESOLUTION_NAMES.get(request.usage.resolution, ""),
            )
        return billing_pb2.ReserveResponse(
            outcome=_OUTCOMES[result.outcome],
            billed_seconds=result.billed_seconds,
            credits=result.credits,
            available_credits=result.available_credits,
        )
