"""Direct uploads: the file goes from the client straight into the bucket.

`POST /api/v1/uploads/direct` with the file's size answers an upload id and a
presigned POST form for `<id>/incoming` (lipsync_common/s3_store.py
`post_form`): its policy holds the one key and the exact size, so the bucket
itself refuses a larger body, and it is valid `FORM_S` (15 minutes). The id is
made by UploadOwners as for any upload, so job validation knows its owner;
`<id>/pending.json` keeps the declared size and the time of the request.
With an `Idempotency-Key`, the id is derived from the account and the key
(UploadOwners), so a retry whose first answer was lost finds that request's
`pending.json` and gets the same upload with a fresh form, on any replica; a
key reused for another size, or after its upload is completed, is a 409
`idempotency_key_reused`.

`POST /api/v1/uploads/{id}/complete` then checks what arrived without reading
it all: its size (a HEAD) against the declared size and the cap of its kind,
and its first bytes (a ranged GET) against the same `sniff` as a multipart
upload (gateway/upload_stream.py), so one rule decides the kind everywhere.
Accepted, the object is copied inside the bucket to `<id>/file` (typed as
sniffed) and `meta.json` is written: from then on it is an upload like any
other. Copied rather than taken in place because the form stays valid after
the completion: a second POST of it can only replace `incoming`, never the
file that was checked. Refused, everything under the id is deleted (415, 413);
a file not there yet is a 409 `upload_not_received`, and the upload can still
be completed once it is.

Until it is completed an upload has no `meta.json`: `GET /api/v1/uploads/{id}`
answers 404, and a job naming its URL fails at the worker, charged nothing,
as with a deleted upload. A completion is idempotent: the upload's metadata is
made from `pending.json` and the file alone, so a second completion (or two at
once) answers the same object. `DELETE /api/v1/uploads/{id}` removes a pending
one too. One never completed is removed by the bucket's lifecycle rule on the
uploads area (its filter is the area's prefix), with the expired uploads.

A folder store has no URLs for clients, so there the route answers 409
`direct_uploads_unavailable` and clients send the multipart upload instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field, Strict

from gateway.auth import Principal
from gateway.bodies import Body, invalid
from gateway.problems import Problem
from gateway.upload_area import UploadArea
from gateway.upload_stream import SNIFF_BYTES, sniff, too_large
from lipsync_common.storage import DirectUploadStore, NotStored, PresignedPost
from lipsync_common.uploads import (
    PendingUpload,
    Upload,
    discard_pending,
    file_key,
    incoming_key,
    meta_key,
    pending_key,
    put_bytes,
    read_pending,
    read_upload,
)

# How long the form may be used: enough to start sending a large file.
FORM_S = 15 * 60
# What the bucket holds until the completion has sniffed the content.
INCOMING_TYPE = "application/octet-stream"


def _positive(value: int) -> int:
    if value < 1:
        raise invalid("must be at least 1")
    return value


class DirectUploadBody(Body):
    bytes: Annotated[int, Strict(), AfterValidator(_positive)] = Field(
        description="The file's exact size; the bucket refuses a body of any other size.",
        json_schema_extra={"minimum": 1},
    )


def not_found() -> Problem:
    return Problem(404, "not_found", "no such upload for this account")


def key_reused(why: str) -> Problem:
    return Problem(
        409,
        "idempotency_key_reused",
        f"this Idempotency-Key was already used for another direct upload: {why}",
    )


def unavailable() -> Problem:
    return Problem(
        409,
        "direct_uploads_unavailable",
        "uploads are not stored in a bucket on this server: send the file to"
        " POST /api/v1/uploads (multipart) instead",
    )


def not_received(detail: str) -> Problem:
    return Problem(409, "upload_not_received", detail)


@dataclass(frozen=True)
class DirectForm:
    """What POST /uploads/direct answers: the pending upload and its form."""

    pending: PendingUpload
    form: PresignedPost
    form_expires_at: float


@dataclass(frozen=True)
class Completed:
    upload: Upload
    # False when it was already complete: the same object, answered again.
    now: bool


class DirectUploads:
    def __init__(self, area: UploadArea) -> None:
        self._area = area

    def _bucket(self) -> DirectUploadStore:
        if not isinstance(self._area.store, DirectUploadStore):
            raise unavailable()
        return self._area.store

    def check_available(self) -> None:
        """409 `direct_uploads_unavailable` unless uploads lie in a bucket."""
        self._bucket()

    async def create(
        self, body: DirectUploadBody, principal: Principal, idempotency_key: str | None = None
    ) -> DirectForm:
        """A new pending upload and its form. With `idempotency_key`, a retry (its answer
        lost) gets the same upload and a fresh form, and a key reused for another size
        a 409; once that upload is completed, the key starts no other."""
        bucket = self._bucket()
        most = max(self._area.limits.values())
        if body.bytes > most:
            raise Problem(
                413, "file_too_large", f"an upload must be at most {most // (1024 * 1024)} MB"
            )
        now = self._area.clock()
        upload_id = self._area.owners.new_id(principal.account_id, idempotency_key)
        pending = None
        if idempotency_key is not None:
            pending = await self._earlier(upload_id, body.bytes, principal)
        if pending is None:
            pending = PendingUpload(
                id=upload_id,
                account_id=principal.account_id,
                size=body.bytes,
                created_at=now,
                expires_at=now + self._area.ttl_s,
            )
            # The request first: a form whose request is not stored could never complete.
            await asyncio.to_thread(
                put_bytes,
                self._area.store,
                pending_key(pending.id),
                pending.to_json(),
                self._area.incoming,
            )
        form_s = int(min(FORM_S, self._area.ttl_s))
        form = await asyncio.to_thread(
            bucket.post_form, incoming_key(pending.id), body.bytes, INCOMING_TYPE, form_s
        )
        return DirectForm(pending, form, now + form_s)

    async def _earlier(
        self, upload_id: str, size: int, principal: Principal
    ) -> PendingUpload | None:
        """The pending upload an earlier request with the same key made, if any; 409 when
        that request declared another size or its upload is already completed."""
        if await self._completed(upload_id, principal) is not None:
            raise key_reused("its upload is already completed")
        pending = await asyncio.to_thread(
            read_pending, self._area.store, upload_id, self._area.clock()
        )
        if pending is not None and pending.size != size:
            raise key_reused(f"it asked for {pending.size} bytes")
        return pending

    async def complete(self, upload_id: str, principal: Principal) -> Completed:
        if not self._area.owners.owns(principal.account_id, upload_id):
            raise not_found()
        done = await self._completed(upload_id, principal)
        if done is not None:
            return Completed(done, now=False)
        if not isinstance(self._area.store, DirectUploadStore):
            raise not_found()
        pending = await asyncio.to_thread(
            read_pending, self._area.store, upload_id, self._area.clock()
        )
        if pending is None or pending.account_id != principal.account_id:
            raise not_found()
        try:
            upload = await asyncio.to_thread(self._check_and_keep, self._area.store, pending)
        except NotStored:
            # Another completion of the same upload took the file meanwhile.
            done = await self._completed(upload_id, principal)
            if done is None:
                raise not_received("the file has not arrived in the bucket yet") from None
            return Completed(done, now=False)
        return Completed(upload, now=True)

    async def _completed(self, upload_id: str, principal: Principal) -> Upload | None:
        upload = await asyncio.to_thread(
            read_upload, self._area.store, upload_id, self._area.clock()
        )
        if upload is None or upload.account_id != principal.account_id:
            return None
        return upload

    def _check_and_keep(self, bucket: DirectUploadStore, pending: PendingUpload) -> Upload:
        """Blocking: the arrived file checked, then kept as the upload, or refused."""
        source = incoming_key(pending.id)
        size = bucket.size(source)
        if size is None:
            raise not_received(
                "the file has not arrived in the bucket yet: send it with the form of"
                " POST /api/v1/uploads/direct, then complete the upload"
            )
        if size < pending.size:
            # Only a bucket that ignores the form's policy lets this in; it may be sent again.
            self._area.store.delete(source)
            raise not_received(
                f"the bucket holds {size} bytes of the {pending.size} declared: send the file again"
            )
        try:
            if size > pending.size:
                raise Problem(
                    413,
                    "file_too_large",
                    f"the file is {size} bytes, more than the {pending.size} declared",
                )
            kind, content_type = sniff(bucket.read_start(source, SNIFF_BYTES))
            if size > self._area.limits[kind]:
                raise too_large(kind, self._area.limits[kind])
        except Problem:
            discard_pending(self._area.store, pending.id)
            raise
        upload = Upload(
            id=pending.id,
            account_id=pending.account_id,
            kind=kind,
            size=size,
            content_type=content_type,
            created_at=pending.created_at,
            expires_at=pending.expires_at,
        )
        bucket.copy(source, file_key(upload.id), content_type)
        # The file before the metadata, as store_upload does: a reader that finds
        # meta.json finds the whole file.
        put_bytes(self._area.store, meta_key(upload.id), upload.to_json(), self._area.incoming)
        discard_pending(self._area.store, upload.id)
        return upload

    async def discard_leftovers(self, upload_id: str) -> None:
        """After a completed upload is deleted: what a form sent again after the
        completion may have left, so that a delete removes every object at once."""
        if isinstance(self._area.store, DirectUploadStore):
            await asyncio.to_thread(discard_pending, self._area.store, upload_id)

    async def discard(self, upload_id: str, principal: Principal) -> bool:
        """Delete a pending direct upload of `principal`; False if there is none."""
        if not self._area.owners.owns(principal.account_id, upload_id):
            return False
        pending = await asyncio.to_thread(
            read_pending, self._area.store, upload_id, self._area.clock()
        )
        if pending is None or pending.account_id != principal.account_id:
            return False
        await asyncio.to_thread(discard_pending, self._area.store, upload_id)
        return True
