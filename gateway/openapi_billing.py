"""The bodies and answers of buying credits (Stripe Checkout), for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gateway.bodies import Body


class CheckoutCreate(Body):
    pack: int = Field(
        ge=0, description="The index of the pack in `GET /api/v1/pricing`'s `credit_packs`."
    )


class CheckoutStarted(BaseModel):
    checkout_url: str = Field(description="The Stripe Checkout page to send the buyer to.")
    session_id: str = Field(description="The Checkout Session (`cs_...`).")


class StripeWebhookReceived(BaseModel):
    received: bool = Field(description="Always true: the event was verified and applied.")


def stripe_webhook_request() -> dict[str, Any]:
    """`openapi_extra` of the webhook: Stripe's event JSON, signed in `Stripe-Signature`."""
    return {
        "parameters": [
            {
                "name": "Stripe-Signature",
                "in": "header",
                "required": True,
                "description": "`t=<unix time>,v1=<HMAC-SHA256 hex>` over `<t>.<body>`,"
                " made by Stripe with the endpoint's signing secret.",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "description": "A Stripe event, passed on byte for byte: the signature covers it.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    }
