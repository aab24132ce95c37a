"""Billing endpoints: balance, usage, the price list, estimates and buying credits.

Buying is Stripe Checkout, and the Stripe calls are billing_service's
(billing_service/checkout.py): the gateway only forwards. The checkout call
sends the buyer's account and pack, with return URLs to the console. The
webhook is public (Stripe calls it) and its body is forwarded as the exact
bytes received, with the `Stripe-Signature` header: the signature covers those
bytes, so nothing here parses or re-encodes them first.
"""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import APIRouter, Query, Request, Security
from fastapi.responses import JSONResponse

from gateway import openapi, openapi_account, openapi_billing
from gateway.auth import Authenticator, Principal
from gateway.clients import RPC_TIMEOUT_S, Backends, rpc_problem
from gateway.job_uploads import JobUploads
from gateway.problems import FieldError, Problem, invalid_parameters, service_unavailable
from gateway.validation import parse_json_object, read_body, validate, validate_estimate
from lipsync.billing.v1 import billing_pb2
from lipsync.inference.v1 import inference_pb2

# Probing downloads the media; a long audio on a slow host takes a while.
PROBE_TIMEOUT_S = 120.0
_AUTH_ERRORS = {
    401: "missing, malformed, unknown or revoked credential",
    429: "rate limit exceeded; Retry-After says when to come back",
    503: "a backend service is unavailable; retry shortly",
}
# Where the buyer's browser comes back to; Stripe fills in {CHECKOUT_SESSION_ID}.
CHECKOUT_SUCCESS_PATH = "/console?checkout=success&session_id={CHECKOUT_SESSION_ID}"
CHECKOUT_CANCEL_PATH = "/console?checkout=canceled"
# billing_service's details for these refusals (billing_service/servicer.py).
PAYMENTS_DISABLED = "payments_disabled"
INVALID_SIGNATURE = "invalid_signature"


def payments_disabled() -> Problem:
    return Problem(
        503, PAYMENTS_DISABLED, "credit packs cannot be bought here: no payment provider is set up"
    )


def _entry_json(entry: billing_pb2.UsageEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "kind": entry.kind,
        "wallet": entry.wallet,
        "job_id": entry.job_id or None,
        "model": entry.model or None,
        "billed_seconds": entry.billed_seconds or None,
        "resolution": entry.resolution or None,
        "credits": entry.credits,
        "reason": entry.reason,
        "created_at": entry.created_at.ToJsonString(),
    }


class BillingRoutes:
    def __init__(
        self,
        backends: Backends,
        allow_private_urls: bool,
        public_url: str,
        uploads: JobUploads | None = None,
    ) -> None:
        self._backends = backends
        self._allow_private_urls = allow_private_urls
        # Checks the upload URLs a body names (this account's, still there); None: no uploads.
        self._uploads = uploads
        self._public_url = public_url.rstrip("/")

    async def balance(self, principal: Principal) -> JSONResponse:
        try:
            balance = await self._backends.billing.GetBalance(
                billing_pb2.GetBalanceRequest(account_id=principal.account_id),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            raise rpc_problem("billing", error) from None
        return JSONResponse(
            {"api_credits": balance.api_credits, "user_credits": balance.user_credits},
            headers={"Cache-Control": "no-store"},
        )

    async def usage(self, principal: Principal, limit: int, cursor: str) -> JSONResponse:
        request = billing_pb2.ListUsageRequest(
            account_id=principal.account_id, limit=limit, cursor=cursor
        )
        try:
            page = await self._backends.billing.ListUsage(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid_parameters(
                    [FieldError("cursor", "cursor is not one this API returned")]
                ) from None
            raise rpc_problem("billing", error) from None
        return JSONResponse(
            {
                "data": [_entry_json(entry) for entry in page.entries],
                "next_cursor": page.next_cursor or None,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def pricing(self) -> JSONResponse:
        try:
            prices = await self._backends.billing.GetPricing(
                billing_pb2.GetPricingRequest(), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise rpc_problem("billing", error) from None
        return JSONResponse(
            {
                "rates": [
                    {"resolution": r.resolution, "credits_per_second": r.credits_per_second}
                    for r in prices.rates
                ],
                "minimum_seconds": prices.minimum_seconds,
                "maximum_seconds": prices.maximum_seconds,
                "credit_packs": [
                    {
                        "price_usd": pack.price_usd,
                        "credits": pack.credits,
                        "price_per_credit_usd": pack.price_per_credit_usd,
                    }
                    for pack in prices.credit_packs
                ],
                "formula": prices.formula,
                "checkout_enabled": prices.checkout_enabled,
            },
            headers={"Cache-Control": "public, max-age=60"},
        )

    async def estimate(self, request: Request, principal: Principal) -> JSONResponse:
        body = parse_json_object(await read_body(request))
        spec = validate_estimate(
            body,
            allow_private_urls=self._allow_private_urls,
            upload_errors=(
                await self._uploads.field_errors(body, principal.account_id)
                if self._uploads
                else ()
            ),
        )
        inference = self._backends.inference
        if inference is None:
            raise service_unavailable("inference")
        try:
            probed = await inference.ProbeDurations(
                inference_pb2.ProbeDurationsRequest(spec=spec), timeout=PROBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid_parameters(
                    [FieldError("formState", error.details() or "the media could not be read")]
                ) from None
            raise rpc_problem("inference", error) from None
        usage = billing_pb2.Usage(spec=spec, duration_seconds=probed.duration_seconds)
        try:
            quote = await self._backends.billing.Quote(
                billing_pb2.QuoteRequest(usage=usage), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise rpc_problem("billing", error) from None
        return JSONResponse({"billed_seconds": quote.billed_seconds, "credits": quote.credits})

    async def checkout(self, request: Request, principal: Principal) -> JSONResponse:
        body = parse_json_object(await read_body(request))
        pack = validate(openapi_billing.CheckoutCreate, body, allow_private_urls=False).pack
        try:
            started = await self._backends.billing.CreateCheckoutSession(
                billing_pb2.CreateCheckoutSessionRequest(
                    account_id=principal.account_id,
                    pack=pack,
                    success_url=self._public_url + CHECKOUT_SUCCESS_PATH,
                    cancel_url=self._public_url + CHECKOUT_CANCEL_PATH,
                ),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise payments_disabled() from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid_parameters(
                    [FieldError("pack", error.details() or "pack is not a pack on sale")]
                ) from None
            raise rpc_problem("billing", error) from None
        return JSONResponse(
            {"checkout_url": started.checkout_url, "session_id": started.session_id},
            headers={"Cache-Control": "no-store"},
        )

    async def stripe_webhook(self, request: Request) -> JSONResponse:
        payload = await read_body(request)
        try:
            await self._backends.billing.HandleStripeWebhook(
                billing_pb2.HandleStripeWebhookRequest(
                    payload=payload, signature=request.headers.get("stripe-signature", "")
                ),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise Problem(
                    400, INVALID_SIGNATURE, "the Stripe-Signature does not match the body"
                ) from None
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise payments_disabled() from None
            # A 5xx makes Stripe deliver the event again later, which is what we want.
            raise rpc_problem("billing", error) from None
        return JSONResponse({"received": True})


def router(
    backends: Backends,
    authenticator: Authenticator,
    allow_private_urls: bool,
    public_url: str = "",
    uploads: JobUploads | None = None,
) -> APIRouter:
    handlers = BillingRoutes(backends, allow_private_urls, public_url, uploads)
    api = APIRouter(prefix="/api/v1", tags=["billing"])
    docs = openapi_account
    any_credential = Security(authenticator.any_credential)
    api_key = Security(authenticator.key_only)
    session = Security(authenticator.session_only)
    limit_query = Query(50, ge=1, le=200, description="Entries per page.")
    cursor_query = Query("", max_length=200, description="`next_cursor` of the last page.")

    @api.get(
        "/balance",
        name="get-balance",
        summary="Read the account's two wallets (API key or session).",
        response_model=docs.Balance,
        responses=openapi.problem_responses(_AUTH_ERRORS),
    )
    async def balance(principal: Principal = any_credential) -> JSONResponse:
        return await handlers.balance(principal)

    @api.get(
        "/usage",
        name="list-usage",
        summary="Ledger entries that moved credits, newest first (API key or session).",
        response_model=docs.Usage,
        responses=openapi.problem_responses({**_AUTH_ERRORS, 422: "limit or cursor invalid"}),
    )
    async def usage(
        principal: Principal = any_credential,
        limit: int = limit_query,
        cursor: str = cursor_query,
    ) -> JSONResponse:
        return await handlers.usage(principal, limit, cursor)

    @api.get(
        "/pricing",
        name="get-pricing",
        summary="The public price list: rates, minimum and cap, credit packs. No key needed.",
        response_model=docs.Pricing,
        responses=openapi.problem_responses({503: "billing is unavailable; retry shortly"}),
    )
    async def pricing() -> JSONResponse:
        return await handlers.pricing()

    @api.post(
        "/estimate",
        name="estimate",
        summary="Price a job from its media durations, without rendering or charging.",
        response_model=docs.Estimate,
        responses=openapi.problem_responses(
            {
                **_AUTH_ERRORS,
                400: "the body is not JSON, or not an object",
                403: "a session token was sent; this call needs an API key",
                422: "a parameter is invalid, or the media cannot be downloaded or decoded",
            }
        ),
        openapi_extra=openapi.estimate_body(),
    )
    async def estimate(request: Request, principal: Principal = api_key) -> JSONResponse:
        return await handlers.estimate(request, principal)

    @api.post(
        "/billing/checkout",
        name="create-checkout",
        summary="Start buying a credit pack: a Stripe Checkout page for it (session token).",
        response_model=openapi_billing.CheckoutStarted,
        responses=openapi.problem_responses(
            {
                **_AUTH_ERRORS,
                400: "the body is not JSON, or not an object",
                403: "an API key was sent; this call needs a session token",
                422: "pack is missing or names no pack of the price list",
                503: "no payment provider is configured (`payments_disabled`), or a backend"
                " is unavailable",
            }
        ),
        openapi_extra=openapi_account.body(openapi_billing.CheckoutCreate),
    )
    async def checkout(request: Request, principal: Principal = session) -> JSONResponse:
        return await handlers.checkout(request, principal)

    @api.post(
        "/billing/stripe-webhook",
        name="stripe-webhook",
        summary="Called by Stripe: a paid Checkout Session grants its pack once. Signed.",
        response_model=openapi_billing.StripeWebhookReceived,
        responses=openapi.problem_responses(
            {
                400: "the Stripe-Signature does not match the body (`invalid_signature`)",
                413: "the body is over 64 KiB",
                503: "payments are not configured, or billing is unavailable (Stripe retries)",
            }
        ),
        openapi_extra=openapi_billing.stripe_webhook_request(),
    )
    async def stripe_webhook(request: Request) -> JSONResponse:
        return await handlers.stripe_webhook(request)

    return api
