"""Validation of job request bodies and headers, with the contract's field names.

The body is checked here by hand rather than by pydantic so that every error
names the field as clients wrote it (`formState.audio`) and all of them are
reported at once. A valid body becomes a `JobRequest` carrying the proto the
job service takes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from gateway.problems import FieldError, Problem, invalid_parameters
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.jobjson import MODELS_BY_NAME, ORDERS_BY_NAME

MAX_BODY_BYTES = 64 * 1024
MAX_URL_CHARS = 2048
MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1
MAX_IDEMPOTENCY_KEY_CHARS = 255
RESOLUTIONS = ("480p", "720p")
DEFAULT_RESOLUTION = "480p"
DEFAULT_ORDER = "left_right"

# The media each endpoint requires, in the order errors are reported.
REQUIRED_MEDIA: Mapping[str, tuple[str, ...]] = {
    "lipsync-video": ("video", "audio"),
    "lipsync-image": ("image", "audio"),
    "lipsync-image-multi": ("image", "left_audio", "right_audio"),
}
COMMON_KEYS = ("resolution", "mask_image", "prompt", "seed")
TOP_LEVEL_KEYS = ("webhook", "formState")


@dataclass(frozen=True)
class JobRequest:
    """A validated job request, ready for `JobService.CreateJob`."""

    model: jobs_pb2.Model.ValueType
    form_state: jobs_pb2.FormState
    webhook: str
    idempotency_key: str
    fingerprint: str


def allowed_keys(endpoint: str) -> tuple[str, ...]:
    extra = ("order",) if endpoint == "lipsync-image-multi" else ()
    return (*REQUIRED_MEDIA[endpoint], *extra, *COMMON_KEYS)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past `MAX_BODY_BYTES`.

    Content-Length is checked first so an honest large upload is refused
    without reading it; the bytes are counted too, since a chunked body has no
    Content-Length and a client may lie.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


def _too_large() -> Problem:
    return Problem(
        413, "payload_too_large", f"the request body must be at most {MAX_BODY_BYTES} bytes"
    )


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are accepted by Python's json module but are not JSON.
    raise ValueError(f"{name} is not JSON")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, else 400 `invalid_json`."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bytes that are not UTF-8.
        raise Problem(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Problem(400, "invalid_json", "the request body must be a JSON object")
    return value


def fingerprint(endpoint: str, body: Mapping[str, Any]) -> str:
    """A digest of the endpoint and body that ignores key order and whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def validate_job_request(
    endpoint: str,
    body: Mapping[str, Any],
    idempotency_key: str | None,
    *,
    allow_private_urls: bool,
) -> JobRequest:
    """Check everything at once; raise 422 listing every field error."""
    check = _Checker()
    key = check.idempotency_key(idempotency_key)
    for name in body:
        if name not in TOP_LEVEL_KEYS:
            check.fail(name, f"{name} is an unknown parameter")
    webhook = check.webhook(body.get("webhook"), allow_private_urls)
    form_state = check.form_state(endpoint, body)
    if check.errors:
        raise invalid_parameters(check.errors)
    return JobRequest(
        model=MODELS_BY_NAME[endpoint],
        form_state=form_state,
        webhook=webhook,
        idempotency_key=key,
        fingerprint=fingerprint(endpoint, body),
    )


def _is_absent(value: Any) -> bool:
    # JSON clients often send null (and web forms "") for a field left empty.
    return value is None or value == ""


def _has_control_chars(text: str) -> bool:
    return any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _http_url_host(value: str) -> str | None:
    """The host of an http(s) URL, or None when `value` is not one."""
    if _has_control_chars(value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname


def _is_private_host(host: str) -> bool:
    # Only literal addresses and localhost can be judged here; the webhook
    # sender must still check the resolved address at delivery time.
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


class _Checker:
    """Collects field errors so that all of them are reported together."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))

    def idempotency_key(self, value: str | None) -> str:
        if value is None:
            return ""
        printable = all(0x20 <= ord(ch) <= 0x7E for ch in value)
        if not printable or not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS:
            self.fail(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            )
            return ""
        return value

    def webhook(self, value: Any, allow_private: bool) -> str:
        if _is_absent(value):
            return ""
        schemes = "an http(s)" if allow_private else "an https://"
        host = _http_url_host(value) if isinstance(value, str) else None
        if host is None or not (allow_private or value.lower().startswith("https://")):
            self.fail("webhook", f"webhook must be {schemes} URL")
            return ""
        if len(value) > MAX_URL_CHARS:
            self.fail("webhook", f"webhook must be at most {MAX_URL_CHARS} characters")
            return ""
        if not allow_private and _is_private_host(host):
            self.fail("webhook", "webhook must not point to a private or local address")
            return ""
        return str(value)

    def form_state(self, endpoint: str, body: Mapping[str, Any]) -> jobs_pb2.FormState:
        form_state = jobs_pb2.FormState()
        raw = body.get("formState")
        if raw is None:
            self.fail("formState", "formState is required")
            return form_state
        if not isinstance(raw, dict):
            self.fail("formState", "formState must be an object")
            return form_state

        for name in REQUIRED_MEDIA[endpoint]:
            if _is_absent(raw.get(name)):
                self.fail(f"formState.{name}", f"formState.{name} is required")
            else:
                setattr(form_state, name, self.media_url(name, raw[name]))
        if endpoint == "lipsync-image-multi":
            form_state.order = ORDERS_BY_NAME[self.order(raw.get("order"))]
        form_state.resolution = self.resolution(raw.get("resolution"))
        if not _is_absent(raw.get("mask_image")):
            form_state.mask_image = self.media_url("mask_image", raw["mask_image"])
        form_state.prompt = self.prompt(raw.get("prompt"))
        seed = self.seed(raw.get("seed"))
        if seed is not None:
            form_state.seed = seed

        allowed = allowed_keys(endpoint)
        for name in raw:
            if name not in allowed:
                self.fail(f"formState.{name}", f"formState.{name} is an unknown parameter")
        return form_state

    def media_url(self, name: str, value: Any) -> str:
        field = f"formState.{name}"
        if not isinstance(value, str) or _http_url_host(value) is None:
            self.fail(field, f"{field} must be an http(s) URL")
            return ""
        if len(value) > MAX_URL_CHARS:
            self.fail(field, f"{field} must be at most {MAX_URL_CHARS} characters")
            return ""
        return value

    def resolution(self, value: Any) -> str:
        if value is None:
            return DEFAULT_RESOLUTION
        if value not in RESOLUTIONS:
            self.fail("formState.resolution", 'formState.resolution must be "480p" or "720p"')
            return DEFAULT_RESOLUTION
        return str(value)

    def order(self, value: Any) -> str:
        if value is None:
            return DEFAULT_ORDER
        if not isinstance(value, str) or value not in ORDERS_BY_NAME:
            self.fail(
                "formState.order",
                'formState.order must be "left_right", "right_left" or "meanwhile"',
            )
            return DEFAULT_ORDER
        return value

    def prompt(self, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail("formState.prompt", "formState.prompt must be a string")
            return ""
        if len(value) > MAX_PROMPT_CHARS:
            self.fail(
                "formState.prompt",
                f"formState.prompt must be at most {MAX_PROMPT_CHARS} characters",
            )
            return ""
        return value

    def seed(self, value: Any) -> int | None:
        """The seed, or None for random (absent or -1)."""
        if value is None:
            return None
        # bool is a subclass of int in Python, but true is not a JSON integer.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail("formState.seed", "formState.seed must be an integer")
            return None
        if value == -1:
            return None
        if not 0 <= value <= MAX_SEED:
            self.fail(
                "formState.seed",
                f"formState.seed must be -1 or between 0 and {MAX_SEED}",
            )
            return None
        return value
