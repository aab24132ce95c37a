"""The account and billing endpoints' bodies and answers, for the OpenAPI document.

`Credentials` and `KeyCreate` also validate their bodies (presence and type,
unknown members refused). What makes an email, a new password or a key name
acceptable is the auth service's rule; the gateway passes its message on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from gateway.bodies import BLANK_IS_ABSENT, Body, ResolutionName

# A string that must be there; "" counts as left out.
_Given = Annotated[str, BLANK_IS_ABSENT]


class Credentials(Body):
    email: _Given = Field(examples=["ada@example.com"])
    # The length rules are the auth service's; its 422 message states them.
    password: _Given = Field(description="At sign-up, long enough for the auth service's rule.")


class SignupResponse(BaseModel):
    account_id: str


class LoginResponse(BaseModel):
    token: str = Field(description="Session token for the account endpoints: `Bearer <token>`.")
    expires_at: str = Field(description="RFC 3339 time after which the token stops working.")


class KeyCreate(Body):
    name: str | None = Field(
        None, description="An optional memorable name (auth bounds its length)."
    )


class KeyCreated(BaseModel):
    key_id: str
    key: str = Field(description="The full key, `sk_<key_id>_<secret>`; shown only once.")
    name: str
    created_at: str


class Key(BaseModel):
    key_id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: str
    last_used_at: str | None
    revoked: bool


class KeyList(BaseModel):
    data: list[Key]


class WebhookSecret(BaseModel):
    secret: str = Field(
        description="`whsec_` + base64 of the HMAC key; verify `webhook-signature` with it."
    )


class Balance(BaseModel):
    api_credits: int = Field(description="API credits available to spend.")
    user_credits: int = Field(description="Web credits; never spent by API calls.")


class UsageEntry(BaseModel):
    id: str
    kind: Literal["grant", "reserve", "capture", "release"] = Field(
        description="grant adds credits; reserve holds a job's price; capture charges it; "
        "release gives it back."
    )
    wallet: Literal["api", "user"]
    job_id: str | None
    model: str | None
    billed_seconds: int | None
    resolution: str | None
    credits: int = Field(description="Credits moved by this entry, never negative.")
    reason: str
    created_at: str


class Usage(BaseModel):
    data: list[UsageEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page.")


class Rate(BaseModel):
    resolution: ResolutionName
    credits_per_second: int


class CreditPack(BaseModel):
    price_usd: float
    credits: int
    price_per_credit_usd: float


class Pricing(BaseModel):
    rates: list[Rate]
    minimum_seconds: int
    maximum_seconds: int
    credit_packs: list[CreditPack]
    formula: str
    checkout_enabled: bool = Field(
        description="Whether the packs can be bought here (POST /api/v1/billing/checkout)."
    )


class Estimate(BaseModel):
    billed_seconds: int
    credits: int


def body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` declaring an inline JSON request body."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
