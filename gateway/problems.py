"""RFC 9457 problem details: the one shape of every error the gateway sends.

`Problem` is raised anywhere in a request; `install` registers handlers so that
errors raised by FastAPI and Starlette themselves (validation, unknown route,
wrong method) and unexpected exceptions come out in the same shape.

Every problem's `type` is `<public base>/api/v1/errors#<code>`: the entry of
its code in the errors catalogue (gateway/errors_catalogue.py), which lists
every code the gateway answers. The base is the app's (`set_type_base`); an
app without one, and a body built outside a request, say `about:blank`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"
# Where the catalogue answers, below the public base URL.
CATALOGUE_PATH = "/api/v1/errors"
BLANK_TYPE = "about:blank"

# RFC 9110 renamed these; Python 3.11's HTTPStatus still has the old phrases.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}

# Stable codes for errors that Starlette raises without one.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


def title(status: int) -> str:
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Problem(Exception):
    """An error answer; `extra` adds extension members to the body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, type_base: str = "") -> dict[str, Any]:
        """The JSON body; `type_base` is the catalogue's URL, "" for about:blank."""
        body: dict[str, Any] = {
            "type": f"{type_base}#{self.code}" if type_base else BLANK_TYPE,
            "title": title(self.status),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        body.update(self.extra)
        return body

    def response(self, type_base: str = "") -> JSONResponse:
        return JSONResponse(
            self.body(type_base),
            status_code=self.status,
            headers=self.headers,
            media_type=MEDIA_TYPE,
        )


def invalid_parameters(errors: Sequence[FieldError]) -> Problem:
    """422 listing every field error; `detail` repeats the first."""
    return Problem(422, "invalid_parameter", errors[0].message, errors=errors)


def service_unavailable(service: str) -> Problem:
    # Retry-After: these outages are usually a restart or a deploy, over in seconds.
    return Problem(
        503,
        "service_unavailable",
        f"the {service} service is unavailable; retry shortly",
        headers={"Retry-After": "1"},
    )


def set_type_base(app: FastAPI, public_url: str) -> None:
    """Make this app's problem types point at its errors catalogue under `public_url`."""
    app.state.problem_type_base = public_url.rstrip("/") + CATALOGUE_PATH


def type_base(request: Request) -> str:
    """The catalogue URL problems of this request's app name; "" when it has none."""
    return str(getattr(request.app.state, "problem_type_base", ""))


async def _problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response(type_base(request))


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else title(status)
    if status == 404:
        detail = "not found"
    code = _CODES.get(status, "client_error" if status < 500 else "server_error")
    return Problem(status, code, detail, headers=exc.headers).response(type_base(request))


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    # Job bodies are validated by gateway.validation; this covers the rest (path
    # and query parameters) in the same shape.
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        name = ".".join(loc) or "body"
        errors.append(FieldError(name, f"{name}: {error.get('msg', 'is invalid')}"))
    if not errors:
        errors.append(FieldError("body", "the request is invalid"))
    return invalid_parameters(errors).response(type_base(request))


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, so the server logs
    # the traceback once; the client never sees it.
    return Problem(500, "internal_error", "internal error").response(type_base(request))


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
