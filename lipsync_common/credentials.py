"""The wire format of bearer credentials: API keys and session tokens.

    API key:        sk_<key_id>_<secret>
    session token:  ses_<random><checksum>

The last six base62 characters of a key's secret (and of a session token) are
the CRC32 of everything before them, key id included. A mistyped, truncated or
made-up credential therefore fails `parse_*` here, in the gateway and in the
auth service alike, without a database lookup. The checksum is no secret and no
protection against forgery: a forged credential with a valid checksum still
fails the keyed-hash comparison in the auth service. It only keeps junk cheap.

The format is shared like `signing.py`: the gateway must refuse junk before it
reaches the auth service, and both must agree on what junk is.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from dataclasses import dataclass

KEY_PREFIX = "sk_"
SESSION_PREFIX = "ses_"
KEY_ID_LENGTH = 12
# 34 random base62 characters (202 bits) plus the 6-character checksum.
SECRET_RANDOM_LENGTH = 34
SESSION_RANDOM_LENGTH = 43
CHECKSUM_LENGTH = 6

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
# The upper bound on the secret only keeps absurd headers from being hashed.
_KEY_RE = re.compile(r"sk_([a-z0-9]{8,16})_([0-9A-Za-z]{32,256})")
_SESSION_RE = re.compile(r"ses_[0-9A-Za-z]{32,256}")


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def checksum(text: str) -> str:
    """Six base62 characters of the CRC32 of `text` (62^6 > 2^32, so no loss)."""
    return _base62(zlib.crc32(text.encode()), CHECKSUM_LENGTH)


def _has_valid_checksum(credential: str) -> bool:
    body, tail = credential[:-CHECKSUM_LENGTH], credential[-CHECKSUM_LENGTH:]
    return secrets.compare_digest(checksum(body), tail)


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_key_id() -> str:
    return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def new_key(key_id: str) -> str:
    """A fresh `sk_<key_id>_<secret>` whose secret ends with its checksum."""
    body = f"{KEY_PREFIX}{key_id}_{random_base62(SECRET_RANDOM_LENGTH)}"
    return body + checksum(body)


def new_session_token() -> str:
    body = SESSION_PREFIX + random_base62(SESSION_RANDOM_LENGTH)
    return body + checksum(body)


def parse_key(credential: str) -> ParsedKey | None:
    """The parts of a well-formed key with a valid checksum, or None."""
    match = _KEY_RE.fullmatch(credential)
    if match is None or not _has_valid_checksum(credential):
        return None
    return ParsedKey(key_id=match.group(1), secret=match.group(2))


def is_session_token(credential: str) -> bool:
    """Whether `credential` is shaped like a session token, checksum included."""
    return _SESSION_RE.fullmatch(credential) is not None and _has_valid_checksum(credential)


def is_well_formed(credential: str) -> bool:
    """Whether the credential could be a key or a session token at all."""
    return parse_key(credential) is not None or is_session_token(credential)
