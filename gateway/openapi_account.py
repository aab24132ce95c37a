"""OpenAPI descriptions of the account and billing endpoints' bodies and answers.

Like gateway.openapi, these models only document: the handlers read and check
bodies by hand so that every error is the contract's problem+json.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(examples=["ada@example.com"])
    password: str = Field(min_length=10, description="At least 10 characters.")


class SignupResponse(BaseModel):
    account_id: str


class LoginResponse(BaseModel):
    token: str = Field(description="Session token for the account endpoints: `Bearer <token>`.")
    expires_at: str = Field(description="RFC 3339 time after which the token stops working.")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100, description="An optional memorable name.")


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
    resolution: Literal["480p", "720p"]
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


class EstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Literal["lipsync-video", "lipsync-image", "lipsync-image-multi"]
    formState: dict[str, Any] = Field(description="The formState of the model's endpoint.")


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
