"""API keys: `sk_<key_id>_<secret>`, generated, parsed and hashed.

The key id is public and finds the key; only a keyed hash of the secret is
stored: HMAC-SHA256 with a server-side pepper. A leaked database therefore
reveals no usable key, and since the secrets are 202 bits of randomness a slow
password hash would add nothing. The format itself, checksum included, lives
in `lipsync_common.credentials`, shared with the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from lipsync_common import credentials
from lipsync_common.credentials import ParsedKey
from lipsync_common.signing import load_or_create_secret

PREFIX_LENGTH = 12
PEPPER_ENV = "LIPSYNC_AUTH_KEY_PEPPER"
PEPPER_FILE = "auth-pepper.key"

__all__ = ["NewKey", "ParsedKey", "generate_key", "hash_secret", "parse_key", "verify_secret"]


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key; `key` is shown to its owner once, then forgotten."""

    key: str
    key_id: str
    secret: str

    @property
    def prefix(self) -> str:
        return key_prefix(self.key)


def generate_key() -> NewKey:
    key_id = credentials.new_key_id()
    key = credentials.new_key(key_id)
    return NewKey(key=key, key_id=key_id, secret=key.rsplit("_", 1)[1])


def parse_key(credential: str) -> ParsedKey | None:
    """The parts of a well-formed key with a valid checksum, or None for anything else."""
    return credentials.parse_key(credential)


def key_prefix(key: str) -> str:
    """The first characters of a key, enough for its owner to recognise it."""
    return key[:PREFIX_LENGTH]


def hash_secret(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def verify_secret(pepper: bytes, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(pepper, secret), stored_hash)


def load_pepper() -> bytes:
    """`LIPSYNC_AUTH_KEY_PEPPER`, or a pepper generated once into the data dir."""
    return load_or_create_secret(PEPPER_ENV, PEPPER_FILE)
