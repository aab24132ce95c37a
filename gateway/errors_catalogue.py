"""The errors catalogue: every problem `code` the gateway can answer, and `GET /api/v1/errors`.

A problem's `type` is `<public base>/api/v1/errors#<code>` (gateway/problems.py),
so a person who meets a code can read what it means and what to do. The list
is written by hand, for people; tests/gateway/test_errors_catalogue.py finds
every code in the gateway's source and fails when one is missing here, so a
new code cannot ship undocumented. Codes are listed before the code that
answers them exists where API.md already promises them (uploads).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway import problems
from gateway.problems import CATALOGUE_PATH, title


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    description: str

    @property
    def title(self) -> str:
        return title(self.status)


CATALOGUE: tuple[ErrorCode, ...] = (
    ErrorCode("bad_request", 400, "The request could not be read as HTTP the API understands."),
    ErrorCode("invalid_json", 400, "The body is not valid JSON, or not a JSON object."),
    ErrorCode(
        "invalid_signature",
        400,
        "A Stripe webhook whose Stripe-Signature does not match its body: forged, changed"
        " on the way, or signed with another secret. Nothing was applied.",
    ),
    ErrorCode(
        "unauthorized",
        401,
        "The API key or session token is missing, malformed, unknown, expired or revoked."
        " The answer never says which.",
    ),
    ErrorCode("invalid_login", 401, "Wrong email or password (the same for an unknown email)."),
    ErrorCode(
        "insufficient_credits",
        402,
        "The account's API credits are below the minimum charge of the request. Buy a credit"
        " pack or ask the operator for credits; `detail` says how many are needed.",
    ),
    ErrorCode("forbidden", 403, "The credential may not make this call."),
    ErrorCode("api_key_required", 403, "This call needs an API key; a session token was sent."),
    ErrorCode(
        "session_required",
        403,
        "This call needs a session token from POST /api/v1/auth/login; an API key was sent.",
    ),
    ErrorCode("signup_closed", 403, "Sign-up is closed on this server."),
    ErrorCode(
        "not_found",
        404,
        "No such resource, or one of another account (the answer never says which).",
    ),
    ErrorCode("method_not_allowed", 405, "The path exists but not with this HTTP method."),
    ErrorCode("not_acceptable", 406, "The API cannot answer in a media type the client accepts."),
    ErrorCode("conflict", 409, "The request conflicts with the current state of the resource."),
    ErrorCode("email_taken", 409, "An account with this email already exists."),
    ErrorCode(
        "idempotency_key_reused",
        409,
        "This Idempotency-Key was already used with a different request body.",
    ),
    ErrorCode("job_finished", 409, "The job has already ended; there is nothing to cancel."),
    ErrorCode(
        "job_processing",
        409,
        "The job is still processing: cancel it before deleting it; its webhook is sent"
        " when it ends.",
    ),
    ErrorCode("no_webhook", 409, "The job has no webhook to deliver again."),
    ErrorCode(
        "direct_uploads_unavailable",
        409,
        "Uploads are not kept in a bucket on this server, so a file cannot be sent straight"
        " to one: send it to POST /api/v1/uploads (multipart) instead.",
    ),
    ErrorCode(
        "upload_not_received",
        409,
        "The file of a direct upload is not in the bucket (yet, or not whole): send it with"
        " the form of POST /api/v1/uploads/direct, then complete the upload again.",
    ),
    ErrorCode("payload_too_large", 413, "The request body is over 64 KiB."),
    ErrorCode("file_too_large", 413, "An uploaded file is over the size limit of its kind."),
    ErrorCode(
        "unsupported_media_type",
        415,
        "The body's or the uploaded file's type is not one the API takes (uploads: decided"
        " from the content, not the name).",
    ),
    ErrorCode(
        "invalid_parameter",
        422,
        "A parameter is missing, of the wrong type, out of range or unknown; `errors` names"
        " each field.",
    ),
    ErrorCode(
        "rate_limited", 429, "Too many requests for this credential; `Retry-After` says when."
    ),
    ErrorCode(
        "too_many_processing_jobs",
        429,
        "The account has as many jobs processing as it may; wait for one to end.",
    ),
    ErrorCode("client_error", 400, "A client error without a more specific code."),
    ErrorCode(
        "internal_error",
        500,
        "Something failed inside the API; it is logged, and retrying later may work.",
    ),
    ErrorCode("server_error", 500, "A server error without a more specific code."),
    ErrorCode(
        "service_unavailable",
        503,
        "A backend service is restarting or unreachable; retry after `Retry-After`.",
    ),
    ErrorCode("not_ready", 503, "The gateway's backends are not all serving yet (readiness)."),
    ErrorCode(
        "payments_disabled",
        503,
        "No payment provider is configured on this server: credit packs cannot be bought"
        " here (pricing's `checkout_enabled` is false).",
    ),
)
CODES = frozenset(entry.code for entry in CATALOGUE)


class ErrorEntry(BaseModel):
    code: str = Field(examples=["insufficient_credits"])
    status: int = Field(examples=[402])
    title: str = Field(examples=["Payment Required"])
    description: str


class ErrorsCatalogue(BaseModel):
    data: list[ErrorEntry]


def catalogue_json() -> dict[str, list[dict[str, object]]]:
    return {
        "data": [
            {
                "code": entry.code,
                "status": entry.status,
                "title": entry.title,
                "description": entry.description,
            }
            for entry in CATALOGUE
        ]
    }


def router() -> APIRouter:
    api = APIRouter(tags=["errors"])
    body = catalogue_json()

    @api.get(
        CATALOGUE_PATH,
        name="list-errors",
        summary="Every problem `code` the API can answer, with its status and meaning. No key.",
        response_model=ErrorsCatalogue,
    )
    async def list_errors() -> JSONResponse:
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600"})

    return api


def install(app: FastAPI, public_url: str) -> None:
    """Serve the catalogue and point every problem's `type` at it."""
    problems.set_type_base(app, public_url)
    app.include_router(router())
