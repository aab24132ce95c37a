"""Exceptions: one class per kind of problem a caller handles differently.

Every answer of the API outside 2xx is an RFC 9457 problem
(`{"status", "code", "title", "detail", "errors": [{"field", "message"}]}`);
`APIError.from_response` turns it into the subclass of its status, so a
caller writes `except InsufficientCreditsError` rather than comparing
numbers. Network trouble that outlived the retries is `APIConnectionError`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class LipsyncError(Exception):
    """The base of every exception this package raises on purpose."""


class ConfigurationError(LipsyncError):
    """The client cannot be built as asked: no API key, a base URL that is not http(s)."""


class APIConnectionError(LipsyncError):
    """No answer from the API (refused, reset, timed out), even after the retries."""


class WaitTimeoutError(LipsyncError):
    """`Job.wait(timeout=...)` ran out of time; the job is still processing."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} still processing after {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


class DownloadError(LipsyncError):
    """The output could not be downloaded whole (short body, 404 after deletion, ...)."""


class WebhookVerificationError(LipsyncError):
    """A webhook's signature, id or timestamp does not check out: do not trust the payload."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem's `errors`: which request field, and what is wrong with it."""

    field: str
    message: str


class APIError(LipsyncError):
    """An answer of the API outside 2xx; `status`, `code`, `detail` and `errors` from its body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        errors: list[FieldError] | None = None,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors: list[FieldError] = errors or []
        self.body: dict[str, Any] = body or {}
        self.headers = headers or httpx.Headers()
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.code or self.title or 'error'}"
        if self.detail:
            text += f": {self.detail}"
        for error in self.errors:
            if error.message and error.message not in self.detail:
                text += f"; {error.field}: {error.message}"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIError:
        """The exception for a non-2xx answer; a body that is not a problem still gives one."""
        body: dict[str, Any] = {}
        try:
            parsed = json.loads(response.content) if response.content else {}
            if isinstance(parsed, dict):
                body = parsed
        except ValueError:
            pass
        errors = [
            FieldError(str(item.get("field", "")), str(item.get("message", "")))
            for item in body.get("errors") or []
            if isinstance(item, dict)
        ]
        detail = str(body.get("detail") or "")
        if not body and response.content:
            detail = response.text[:200]
        kind = _BY_STATUS.get(response.status_code)
        if kind is None:
            kind = ServerError if response.status_code >= 500 else APIError
        args: dict[str, Any] = {
            "title": str(body.get("title") or response.reason_phrase),
            "errors": errors,
            "body": body,
            "headers": response.headers,
        }
        code = str(body.get("code") or "")
        if kind is RateLimitError:
            return RateLimitError(
                response.status_code,
                code,
                detail,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                **args,
            )
        return kind(response.status_code, code, detail, **args)


class AuthenticationError(APIError):
    """401 (and 403): the API key is missing, malformed, unknown or revoked."""


class InsufficientCreditsError(APIError):
    """402: the account's API credits are below the request's minimum charge."""


class NotFoundError(APIError):
    """404: no such job or upload for this account (or an endpoint this server lacks)."""


class UploadsUnavailableError(NotFoundError):
    """This API server has no `POST /api/v1/uploads`: pass public URLs instead of files."""


class ConflictError(APIError):
    """409: `job_finished`, `job_processing`, `no_webhook`, or an Idempotency-Key reused."""


class ValidationError(APIError):
    """400, 413, 415 or 422: the request itself is wrong; `errors` names the fields."""


class RateLimitError(APIError):
    """429: too many requests for this key; `retry_after` is the seconds to wait, if said."""

    def __init__(
        self, status: int, code: str, detail: str, *, retry_after: float | None, **kwargs: Any
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, code, detail, **kwargs)


class ServerError(APIError):
    """5xx, still there after the retries."""


class BucketError(APIError):
    """The bucket refused a file sent straight to it (a direct upload), or kept failing.

    `code` is the bucket's own (S3's XML `<Code>`): `EntityTooLarge` when the
    file is not the size declared (it changed since it was measured),
    `AccessDenied` when the form has expired.
    """

    @classmethod
    def from_response(cls, response: httpx.Response) -> BucketError:
        code, message = _s3_error(response.content)
        what = "refused the file" if response.status_code < 500 else "kept failing"
        detail = f"the bucket {what}: {message or response.text[:200] or 'no detail'}"
        return cls(
            response.status_code,
            code or response.reason_phrase,
            detail,
            title=response.reason_phrase,
            headers=response.headers,
        )


MAX_ERROR_DOCUMENT = 64 * 1024


def _s3_error(content: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 error document; empty strings for any other body."""
    try:
        # An error document is a few hundred bytes; anything longer is not one.
        root = ElementTree.fromstring(content[:MAX_ERROR_DOCUMENT])
    except ElementTree.ParseError:
        return "", ""
    return (root.findtext("Code") or "").strip(), (root.findtext("Message") or "").strip()


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    415: ValidationError,
    422: ValidationError,
    429: RateLimitError,
}


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: an integer of seconds or an HTTP date; else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
