"""Unguessable, expiring download URLs for results.

job_service signs the output URL it puts in a job object; the gateway checks
the signature before serving the file. Both read the key from
`LIPSYNC_URL_SIGNING_KEY`; on one machine without it, the key is generated
once into the data directory so every local process shares it
(`load_or_create_secret`, which other local secrets reuse).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from lipsync_common.config import data_dir, env_str


def load_signing_key() -> bytes:
    return load_or_create_secret("LIPSYNC_URL_SIGNING_KEY", "url-signing.key")


def load_or_create_secret(env_name: str, filename: str) -> bytes:
    """The secret in `env_name`, or one generated once into `<data_dir>/<filename>`.

    The file fallback is for one machine, where every local process must agree
    on the secret without any configuration; a cluster sets the variable.
    """
    configured = env_str(env_name, "")
    if configured:
        return configured.encode()
    path = data_dir() / filename
    try:
        # O_EXCL: when several local services start at once, exactly one writes.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


def _read_when_written(path: Path) -> bytes:
    for _ in range(100):
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.01)
    raise RuntimeError(f"{path} stays empty; delete it and restart")


def _signature(key: bytes, object_key: str, expires: int) -> str:
    mac = hmac.new(key, f"{object_key}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign_path(key: bytes, object_key: str, expires: int) -> str:
    """The path and query of a download URL valid until `expires` (unix time)."""
    return f"/files/{object_key}?expires={expires}&sig={_signature(key, object_key, expires)}"


def verify(key: bytes, object_key: str, expires: int, signature: str, now: float) -> bool:
    if expires < now:
        return False
    return hmac.compare_digest(_signature(key, object_key, expires), signature)
