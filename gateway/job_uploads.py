"""The upload URLs a job or estimate names: this account's, and there to be read.

`UploadOwners` refuses another account's upload with no I/O. This adds one
metadata read per upload URL, so that a customer learns at once, from a 422
naming the field, that an upload of theirs is gone (deleted, expired) or was
never completed (a direct upload whose `/complete` was not called), instead of
from a job accepted and failed a moment later.

The worker still checks (inference_service/fetch.py): an upload may expire or
be deleted between this read and the job's turn, and then the job fails there,
charged nothing. A store that cannot answer here is not the customer's fault:
the job is accepted, and the worker's own read decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.problems import FieldError
from gateway.upload_owners import UploadOwners
from lipsync_common.storage import ObjectStore
from lipsync_common.uploads import gone_message, lookup_upload, upload_id_in

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobUploads:
    owners: UploadOwners
    store: ObjectStore
    clock: Callable[[], float]

    async def field_errors(self, body: Mapping[str, Any], account_id: str) -> list[FieldError]:
        """A 422 error for each `formState` field naming an upload that is not `account_id`'s
        or that is not there to read (gone, expired, never completed), in the body's order."""
        errors = {error.field: error for error in self.owners.field_errors(body, account_id)}
        form = body.get("formState")
        if not isinstance(form, Mapping):
            return list(errors.values())
        named = {
            field: upload_id
            for name, value in form.items()
            if isinstance(value, str)
            and (upload_id := upload_id_in(value, self.owners.public_url)) is not None
            and (field := f"formState.{name}") not in errors
        }
        there = await asyncio.gather(
            *(self._there(upload_id, account_id) for upload_id in named.values())
        )
        for field, found in zip(named, there, strict=True):
            if not found:
                errors[field] = FieldError(field, gone_message(field))
        return [errors[field] for name in form if (field := f"formState.{name}") in errors]

    async def _there(self, upload_id: str, account_id: str) -> bool:
        try:
            upload = await asyncio.to_thread(lookup_upload, self.store, upload_id, self.clock())
        except Exception:
            log.warning(
                "upload not checked: the store did not answer",
                exc_info=True,
                extra={"fields": {"upload_id": upload_id}},
            )
            return True
        return upload is not None and upload.account_id == account_id
