"""Whose upload a URL names, told without reading the store.

An upload id is `up_<random><tag>`: 24 random hex digits and a 16-digit HMAC
of them and the owner's account, made with the gateway's signing key (the same
on every replica). So job validation can refuse another account's upload URL
with a 422 naming the field as the request arrives, with no I/O and on any
replica. Whether an upload of the caller's is still there is gateway/job_uploads.py's
one read, which the job and estimate routes ask (it asks `field_errors` here
first) and hand to validation (gateway/validation.py), which lists the errors
with the body's own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.problems import FieldError
from lipsync_common.uploads import upload_id_in

PREFIX = "up_"
_RANDOM_HEX = 24
_TAG_HEX = 16
UPLOAD_ID = re.compile(rf"^{PREFIX}[0-9a-f]{{{_RANDOM_HEX + _TAG_HEX}}}$")


@dataclass(frozen=True)
class UploadOwners:
    """Makes and checks upload ids for one platform (its URL and signing key)."""

    public_url: str
    signing_key: bytes

    def _tag(self, random_part: str, account_id: str) -> str:
        message = f"upload\n{account_id}\n{random_part}".encode()
        return hmac.new(self.signing_key, message, hashlib.sha256).hexdigest()[:_TAG_HEX]

    def new_id(self, account_id: str, idempotency_key: str | None = None) -> str:
        """A fresh upload id; with `idempotency_key`, the same id for the same account and
        key every time (on every replica), so a retried request names the same upload."""
        if idempotency_key is None:
            random_part = secrets.token_hex(_RANDOM_HEX // 2)
        else:
            message = f"upload-key\n{account_id}\n{idempotency_key}".encode()
            digest = hmac.new(self.signing_key, message, hashlib.sha256).hexdigest()
            random_part = digest[:_RANDOM_HEX]
        return f"{PREFIX}{random_part}{self._tag(random_part, account_id)}"

    def owns(self, account_id: str, upload_id: str) -> bool:
        if not UPLOAD_ID.fullmatch(upload_id):
            return False
        random_part = upload_id[len(PREFIX) : len(PREFIX) + _RANDOM_HEX]
        tag = upload_id[len(PREFIX) + _RANDOM_HEX :]
        return hmac.compare_digest(tag, self._tag(random_part, account_id))

    def field_errors(self, body: Mapping[str, Any], account_id: str) -> list[FieldError]:
        """A 422 error for each `formState` field naming an upload not of `account_id`."""
        form = body.get("formState")
        if not isinstance(form, Mapping):
            return []
        errors = []
        for name, value in form.items():
            if not isinstance(value, str):
                continue
            upload_id = upload_id_in(value, self.public_url)
            if upload_id is None and value.startswith(f"{self.public_url}/api/v1/uploads/"):
                upload_id = ""  # this platform's upload path, but no id of ours
            if upload_id is not None and not self.owns(account_id, upload_id):
                field = f"formState.{name}"
                errors.append(FieldError(field, f"{field} is not an upload of this account"))
        return errors
