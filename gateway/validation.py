"""Reading and validating request bodies and headers, with the contract's errors.

Bodies are checked by the pydantic models of gateway.bodies, the same ones
that write the OpenAPI document; this module turns pydantic's errors into the
contract's: one 422 listing every error at once, each naming the field as the
client wrote it (`formState.audio`) in a sentence that starts with that name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from gateway.bodies import ALLOW_PRIVATE_URLS, ESTIMATE, INVALID, JOB_MODELS, EstimateBody
from gateway.problems import FieldError, Problem, invalid_parameters
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import MODEL_CASES, MODEL_NAMES

MAX_BODY_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY_CHARS = 255
IDEMPOTENCY_KEY = "Idempotency-Key"

# The end of the sentence for each pydantic error type the bodies can produce.
_MESSAGES: Mapping[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is an unknown parameter",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "string_too_long": "must be at most {max_length} characters",
    "literal_error": "must be {expected}",
}
_MODEL_FIELD = "model"
_UNKNOWN_MODEL = f"{_MODEL_FIELD} must be one of {', '.join(MODEL_NAMES)}"

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class JobRequest:
    """A validated job request, ready for `JobService.CreateJob`."""

    spec: jobs_pb2.JobSpec
    webhook: str
    idempotency_key: str
    fingerprint: str


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
    """The body as a JSON object of valid Unicode text.

    400 `invalid_json` if it is not a JSON object; 422 naming every string
    (member name or value) that holds a lone surrogate.
    """
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bytes that are not UTF-8.
        raise Problem(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Problem(400, "invalid_json", "the request body must be a JSON object")
    # In ASCII text a surrogate can only come from a \\u escape, so most bodies skip the walk.
    if raw.isascii() and b"\\u" not in raw:
        return value
    errors = lone_surrogate_errors(value)
    if errors:
        raise invalid_parameters(errors)
    return value


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate of `text` as its JSON escape (`\\ud800`), None if none."""
    # Surrogates are the only code points that UTF-8 cannot encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"\\u{ord(text[error.start]):04x}"
    return None


def _as_written(text: str) -> str:
    # A member name is reported as the client wrote it, its surrogates as escapes,
    # so that the answer itself is valid UTF-8.
    return "".join(_lone_surrogate(char) or char for char in text)


def _child(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def lone_surrogate_errors(body: dict[str, Any]) -> list[FieldError]:
    """A 422 error for each string of `body`, name or value, holding a lone surrogate.

    json.loads turns the escape `\\ud800` (and the UTF-8-encoded surrogate
    bytes, which it decodes with "surrogatepass") into a str that protobuf, the
    fingerprint and the JSON answer all fail to encode: a 500 that dropped the
    connection. Refusing them here means no later code sees one.
    """
    errors: list[FieldError] = []

    def check(field: str, text: str, rule: str) -> None:
        escape = _lone_surrogate(text)
        if escape is not None:
            errors.append(FieldError(field, f"{field} {rule} ({escape} is a lone surrogate)"))

    # A stack in document order, not recursion: json.loads accepts nesting as
    # deep as the interpreter's recursion limit, which a recursive walk would pass.
    # Each entry: the field's path, its member name (None in a list), its value.
    pending: list[tuple[str, str | None, Any]] = [("", None, body)]
    while pending:
        path, name, value = pending.pop()
        field = path or "body"
        if name is not None:
            check(field, name, "must be a name in valid Unicode text")
        if isinstance(value, str):
            check(field, value, "must be valid Unicode text")
        elif isinstance(value, dict):
            members = [(_child(path, _as_written(key)), key, item) for key, item in value.items()]
            pending.extend(reversed(members))
        elif isinstance(value, list):
            items = [(_child(path, str(i)), None, item) for i, item in enumerate(value)]
            pending.extend(reversed(items))
    return errors


def fingerprint(endpoint: str, body: Mapping[str, Any]) -> str:
    """A digest of the endpoint and body that ignores key order and whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def field_error(error: ErrorDetails) -> FieldError:
    """A pydantic error as the contract writes it: `<field> <what is wrong>`."""
    # A tagged union (the estimate body) puts the model's name first in the location.
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in MODEL_CASES:
        loc = loc[1:]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return FieldError(_MODEL_FIELD, _UNKNOWN_MODEL)
    field = ".".join(loc) or "body"
    kind = error["type"]
    if kind == INVALID:
        end = error["msg"]
    elif kind in _MESSAGES:
        # pydantic quotes choices with ' ; the contract's messages use JSON's ".
        context = {k: str(v).replace("'", '"') for k, v in error.get("ctx", {}).items()}
        end = _MESSAGES[kind].format(**context)
    else:
        end = f"is invalid ({error['msg']})"
    return FieldError(field, f"{field} {end}")


def _errors(exc: ValidationError) -> list[FieldError]:
    return [field_error(error) for error in exc.errors(include_url=False, include_input=False)]


def idempotency_key_errors(value: str | None) -> list[FieldError]:
    """The Idempotency-Key header's error, if any; None means no key."""
    if value is None:
        return []
    printable = all(0x20 <= ord(ch) <= 0x7E for ch in value)
    if printable and 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS:
        return []
    rule = f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters"
    return [FieldError(IDEMPOTENCY_KEY, f"{IDEMPOTENCY_KEY} {rule}")]


def validate(
    schema: type[Model] | TypeAdapter[Model],
    body: Mapping[str, Any],
    *,
    allow_private_urls: bool,
    errors: Sequence[FieldError] = (),
) -> Model:
    """The body as `schema`, else 422 listing `errors` and every field error."""
    context = {ALLOW_PRIVATE_URLS: allow_private_urls}
    try:
        if isinstance(schema, TypeAdapter):
            value = schema.validate_python(body, context=context)
        else:
            value = schema.model_validate(body, context=context)
    except ValidationError as exc:
        raise invalid_parameters([*errors, *_errors(exc)]) from None
    if errors:
        raise invalid_parameters(errors)
    return value


def validate_job_request(
    endpoint: str,
    body: Mapping[str, Any],
    idempotency_key: str | None,
    *,
    allow_private_urls: bool,
    header_errors: Sequence[FieldError] = (),
    upload_errors: Sequence[FieldError] = (),
) -> JobRequest:
    """Check the body of `POST /api/v1/<endpoint>` and its headers at once; 422 lists every error.

    `header_errors` are those of other headers the caller checked (`Prefer`),
    `upload_errors` the fields naming another account's upload
    (gateway/upload_owners.py).
    """
    model = JOB_MODELS[MODEL_CASES[endpoint]]
    job = validate(
        model.request,
        body,
        allow_private_urls=allow_private_urls,
        # Another account's upload URL is refused here, with the other errors.
        errors=[
            *idempotency_key_errors(idempotency_key),
            *header_errors,
            *upload_errors,
        ],
    )
    return JobRequest(
        spec=job.formState.to_spec(),
        webhook=job.webhook or "",
        idempotency_key=idempotency_key or "",
        fingerprint=fingerprint(endpoint, body),
    )


def validate_estimate(
    body: Mapping[str, Any],
    *,
    allow_private_urls: bool,
    upload_errors: Sequence[FieldError] = (),
) -> jobs_pb2.JobSpec:
    """The JobSpec an estimate body describes, else 422 (with `upload_errors` too)."""
    estimate: EstimateBody = validate(
        ESTIMATE, body, allow_private_urls=allow_private_urls, errors=list(upload_errors)
    )
    return estimate.formState.to_spec()
