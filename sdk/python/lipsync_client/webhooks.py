"""Standard Webhooks verification (https://www.standardwebhooks.com), as the API signs.

    payload = webhooks.verify(request_body, request_headers, "whsec_...")

The signed content is `f"{webhook-id}.{webhook-timestamp}.{body}"`, the key
is the base64 part of the account's `whsec_` secret, and `webhook-signature`
holds one or more space-separated `v1,<base64 HMAC-SHA256>` (more than one
while a secret is being rotated): any match is enough. A timestamp further
than 5 minutes from now, either way, is refused, so a captured delivery
cannot be replayed later. Comparisons are constant-time. Pass the body
exactly as received (bytes), before any JSON parsing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from lipsync_client.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Unpadded base64 is accepted, as the reference implementation accepts it.
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise WebhookVerificationError("the secret is not a whsec_<base64> secret") from error


def sign(secret: str | bytes, msg_id: str, timestamp: int, payload: bytes) -> str:
    """The `webhook-signature` value for one message (what the API sends; handy in tests)."""
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    mac = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The webhook's JSON object if its signature is valid; else `WebhookVerificationError`."""
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as error:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from error
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        skew = current - timestamp
        raise WebhookVerificationError(
            f"webhook-timestamp is {skew:+.0f} s off (tolerance {tolerance_s:g} s)"
        )
    expected = sign(secret, msg_id, timestamp, body).encode()
    # Versions other than v1 are skipped, not failed: a receiver must accept any v1 match.
    matched = False
    for candidate in signatures.split():
        if candidate.startswith("v1,"):
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise WebhookVerificationError("no webhook-signature matches")
    try:
        parsed = json.loads(body)
    except ValueError as error:
        raise WebhookVerificationError("the payload is not JSON") from error
    if not isinstance(parsed, dict):
        raise WebhookVerificationError("the payload is not a JSON object")
    return parsed
