"""API keys: `sk_<key_id>_<secret>`, generated, parsed and hashed.

The key id is public and finds the key; only a keyed hash of the secret is
stored: HMAC-SHA256 with a server-side pepper. A leaked database therefore
reveals no usable key, and since the secrets are 238 bits of randomness a slow
password hash would add nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from lipsync_common.signing import load_or_create_secret

KEY_ID_LENGTH = 12
SECRET_LENGTH = 40
PREFIX_LENGTH = 12
PEPPER_ENV = "LIPSYNC_AUTH_KEY_PEPPER"
PEPPER_FILE = "auth-pepper.key"

_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_BASE62 = string.digits + string.ascii_letters
# The upper bound on the secret only keeps absurd headers from being hashed.
_KEY_RE = re.compile(r"sk_([a-z0-9]{8,16})_([0-9A-Za-z]{32,256})")


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str


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
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = "".join(secrets.choice(_BASE62) for _ in range(SECRET_LENGTH))
    return NewKey(key=f"sk_{key_id}_{secret}", key_id=key_id, secret=secret)


def parse_key(credential: str) -> ParsedKey | None:
    """The parts of a well-formed key, or None for anything else."""
    match = _KEY_RE.fullmatch(credential)
    if match is None:
        return None
    return ParsedKey(key_id=match.group(1), secret=match.group(2))


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
