"""Per-account webhook signing secrets, `whsec_<base64 of 32 random bytes>`.

Unlike key secrets, these must be readable again (job_service signs with them,
the account reads them), so they cannot be hashed. They are sealed at rest
instead: XORed with HMAC-SHA256(pepper, nonce), a one-time pad from a keyed
PRF with a fresh random nonce per secret. A database dump without the pepper
reveals nothing about them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32
NONCE_BYTES = 16


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def encode(secret: bytes) -> str:
    """The form shown to the account and used by Standard Webhooks libraries."""
    return PREFIX + base64.b64encode(secret).decode()


def _pad(pepper: bytes, nonce: bytes) -> bytes:
    return hmac.new(pepper, b"webhook-secret\n" + nonce, hashlib.sha256).digest()


def seal(pepper: bytes, secret: bytes) -> tuple[str, str]:
    """(nonce, sealed secret), both base64, to store."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = bytes(a ^ b for a, b in zip(secret, _pad(pepper, nonce), strict=True))
    return base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()


def unseal(pepper: bytes, nonce: str, sealed: str) -> bytes:
    pad = _pad(pepper, base64.b64decode(nonce))
    return bytes(a ^ b for a, b in zip(base64.b64decode(sealed), pad, strict=True))
