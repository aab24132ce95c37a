"""Uploads: `POST/GET/DELETE /api/v1/uploads` and the owner's download of the file.

The body streams through gateway/upload_stream.py into a temporary file under
the uploads folder (kind sniffed, cap enforced as bytes arrive), which the
store then takes: renamed into place in a folder, a multipart upload into a
bucket. The metadata lies next to the file (lipsync_common/uploads.py says
why); the id carries an HMAC of the owner (gateway/upload_owners.py), so job
validation tells another account's upload URL without reading the store.

Another account's upload, an unknown one and an expired one are the same 404.
The file is downloadable at its `url` by its owner (API key or session) until
`expiresAt`: served from the folder, or by a `307` to a short presigned URL of
the bucket, as the results are (gateway/routes_files.py).

Where uploads lie in a bucket, a client may also send the file straight there:
`POST /api/v1/uploads/direct`, the presigned form, then
`POST /api/v1/uploads/{id}/complete` (gateway/direct_uploads.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Header, Request, Response, Security
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from gateway import openapi
from gateway.auth import Authenticator, Principal
from gateway.direct_uploads import DirectForm, DirectUploadBody, DirectUploads, not_found
from gateway.held_file import HeldFileResponse
from gateway.openapi_account import body as json_body
from gateway.problems import Problem
from gateway.upload_area import UploadArea
from gateway.upload_owners import UploadOwners
from gateway.upload_stream import FIELD, receive_file
from gateway.validation import (
    IDEMPOTENCY_KEY,
    idempotency_key_errors,
    parse_json_object,
    read_body,
    validate,
)
from lipsync_common.storage import ObjectStore
from lipsync_common.uploads import (
    Upload,
    content_url,
    delete_upload,
    file_key,
    read_upload,
    store_upload,
)

# Long enough to start a download; a resumed one comes back for a new URL.
REDIRECT_S = 300
INCOMING = ".incoming"


class UploadDoc(BaseModel):
    id: str = Field(description="The upload's id (`up_...`).")
    url: str = Field(
        description="Use it in any media field of this account's jobs; the owner can also"
        " download it here until `expiresAt`."
    )
    kind: str = Field(description="`image`, `audio` or `video`, from the file's content.")
    bytes: int = Field(description="The file's size.")
    contentType: str = Field(description="The file's type, from its content.")
    expiresAt: str = Field(description="When the upload is deleted (RFC 3339, UTC).")


class UploadForm(BaseModel):
    method: Literal["POST"] = Field(description="Always POST: a presigned POST form.")
    url: str = Field(description="The bucket's URL to send the form to.")
    fields: dict[str, str] = Field(
        description="Send each as a form field, as given, then the file as the last part,"
        " named `file`, in one `multipart/form-data` body."
    )


class DirectUploadDoc(BaseModel):
    id: str = Field(description="The upload's id (`up_...`), to complete it.")
    upload: UploadForm
    bytes: int = Field(description="The size the bucket takes: exactly the declared one.")
    expiresAt: str = Field(description="When the form stops working (RFC 3339, UTC).")
    completeUrl: str = Field(description="POST here once the file is sent.")


def _multipart_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FIELD],
                        "properties": {FIELD: {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    }


_IDEMPOTENCY_KEY = Header(
    None,
    alias=IDEMPOTENCY_KEY,
    description="1 to 255 printable characters: a retry with the same key and `bytes` gets"
    " the same upload id and a fresh form, never a second upload.",
)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class UploadRoutes:
    def __init__(self, area: UploadArea) -> None:
        self._area = area
        area.incoming.mkdir(parents=True, exist_ok=True)
        self._direct = DirectUploads(area)

    def _json(self, upload: Upload) -> dict[str, Any]:
        return {
            "id": upload.id,
            "url": content_url(self._area.owners.public_url, upload.id),
            "kind": upload.kind,
            "bytes": upload.size,
            "contentType": upload.content_type,
            "expiresAt": _timestamp(upload.expires_at),
        }

    async def create(self, request: Request, principal: Principal) -> JSONResponse:
        received = await receive_file(
            request.stream(),
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            self._area.limits,
            self._area.incoming,
        )
        now = self._area.clock()
        upload = Upload(
            id=self._area.owners.new_id(principal.account_id),
            account_id=principal.account_id,
            kind=received.kind,
            size=received.size,
            content_type=received.content_type,
            created_at=now,
            expires_at=now + self._area.ttl_s,
        )
        try:
            await asyncio.to_thread(store_upload, self._area.store, upload, received.path)
        finally:
            received.path.unlink(missing_ok=True)
        return JSONResponse(
            self._json(upload),
            status_code=201,
            headers={"Location": f"/api/v1/uploads/{upload.id}"},
        )

    async def read(self, upload_id: str, principal: Principal) -> Upload:
        if not self._area.owners.owns(principal.account_id, upload_id):
            raise not_found()
        upload = await asyncio.to_thread(
            read_upload, self._area.store, upload_id, self._area.clock()
        )
        if upload is None or upload.account_id != principal.account_id:
            raise not_found()
        return upload

    async def get(self, upload_id: str, principal: Principal) -> JSONResponse:
        return JSONResponse(self._json(await self.read(upload_id, principal)))

    async def delete(self, upload_id: str, principal: Principal) -> Response:
        try:
            await self.read(upload_id, principal)
        except Problem:
            # A direct upload not completed yet is deleted too.
            if not await self._direct.discard(upload_id, principal):
                raise
            return Response(status_code=204)
        await asyncio.to_thread(delete_upload, self._area.store, upload_id)
        await self._direct.discard_leftovers(upload_id)
        return Response(status_code=204)

    async def direct(self, request: Request, principal: Principal, key: str | None) -> JSONResponse:
        self._direct.check_available()
        body = validate(
            DirectUploadBody,
            parse_json_object(await read_body(request)),
            allow_private_urls=False,
            errors=idempotency_key_errors(key),
        )
        made = await self._direct.create(body, principal, key)
        return JSONResponse(self._form_json(made), status_code=201)

    def _form_json(self, made: DirectForm) -> dict[str, Any]:
        upload_id = made.pending.id
        base = f"{self._area.owners.public_url.rstrip('/')}/api/v1/uploads/{upload_id}"
        return {
            "id": upload_id,
            "upload": {"method": "POST", "url": made.form.url, "fields": dict(made.form.fields)},
            "bytes": made.pending.size,
            "expiresAt": _timestamp(made.form_expires_at),
            "completeUrl": f"{base}/complete",
        }

    async def complete(self, upload_id: str, principal: Principal) -> JSONResponse:
        done = await self._direct.complete(upload_id, principal)
        return JSONResponse(
            self._json(done.upload),
            status_code=201 if done.now else 200,
            headers={"Location": f"/api/v1/uploads/{upload_id}"},
        )

    async def content(self, request: Request, upload_id: str, principal: Principal) -> Response:
        upload = await self.read(upload_id, principal)
        key = file_key(upload.id)
        method = "HEAD" if request.method == "HEAD" else "GET"
        url = await asyncio.to_thread(self._area.store.url, key, REDIRECT_S, method)
        if url is not None:
            return RedirectResponse(
                url,
                status_code=307,
                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
            )
        path = self._area.store.local_path(key)
        if path is None:
            raise not_found()
        try:
            return HeldFileResponse(
                path,
                media_type=upload.content_type,
                headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
            )
        except FileNotFoundError:
            raise not_found() from None  # deleted since it was looked up


def router(
    store: ObjectStore,
    authenticator: Authenticator,
    owners: UploadOwners,
    folder: Path,
    limits: Mapping[str, int],
    ttl_s: float,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    handlers = UploadRoutes(UploadArea(store, owners, folder / INCOMING, limits, ttl_s, clock))
    api = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
    any_credential = Security(authenticator.any_credential)

    @api.post(
        "",
        name="create-upload",
        summary="Upload a local image, audio or video file to use in jobs (multipart, `file`).",
        status_code=201,
        response_model=UploadDoc,
        openapi_extra=_multipart_body(),
        responses=openapi.problem_responses(
            {
                400: "not a complete multipart body",
                401: "missing or invalid credential",
                413: "the file is over the size limit of its kind",
                415: "not multipart/form-data, or a file of a type the API does not take",
                422: "no part named file, or more than one",
            }
        ),
    )
    async def create_upload(request: Request, principal: Principal = any_credential) -> Response:
        return await handlers.create(request, principal)

    @api.post(
        "/direct",
        name="create-direct-upload",
        summary="Start an upload sent straight to the bucket: a presigned POST form for"
        " exactly `bytes` bytes, valid 15 minutes; then complete it.",
        status_code=201,
        response_model=DirectUploadDoc,
        openapi_extra=json_body(DirectUploadBody),
        responses=openapi.problem_responses(
            {
                400: "the body is not a JSON object",
                401: "missing or invalid credential",
                409: "uploads are not kept in a bucket here (`direct_uploads_unavailable`):"
                " use POST /api/v1/uploads; or the Idempotency-Key was used for another"
                " size or for an upload already completed (`idempotency_key_reused`)",
                413: "`bytes` is over the largest size limit, or the body over 64 KiB",
                422: "`bytes` is missing, not an integer or under 1, or the Idempotency-Key"
                " is not 1 to 255 printable characters",
            }
        ),
    )
    async def create_direct_upload(
        request: Request,
        principal: Principal = any_credential,
        # Checked with the body (gateway.validation), so a bad key is one more 422 error.
        idempotency_key: str | None = _IDEMPOTENCY_KEY,
    ) -> Response:
        return await handlers.direct(request, principal, idempotency_key)

    @api.post(
        "/{id}/complete",
        name="complete-upload",
        summary="Check a file sent with the form of POST /uploads/direct and make it an"
        " upload (201; 200 with the same object once it is complete).",
        status_code=201,
        response_model=UploadDoc,
        responses={
            200: {
                "description": "Already completed: the same upload.",
                "content": {"application/json": {"schema": openapi.ref(UploadDoc)}},
            },
            **openapi.problem_responses(
                {
                    401: "missing or invalid credential",
                    404: "no such upload for this account, or it has expired",
                    409: "the file has not arrived in the bucket (`upload_not_received`)",
                    413: "the file is over the size limit of its kind: it was deleted",
                    415: "the file is not of a type the API takes: it was deleted",
                }
            ),
        },
    )
    async def complete_upload(id: str, principal: Principal = any_credential) -> Response:
        return await handlers.complete(id, principal)

    not_found_doc = openapi.problem_responses(
        {401: "missing or invalid credential", 404: "no such upload for this account"}
    )

    @api.get(
        "/{id}",
        name="get-upload",
        summary="Read an upload of your account.",
        response_model=UploadDoc,
        responses=not_found_doc,
    )
    async def get_upload(id: str, principal: Principal = any_credential) -> Response:
        return await handlers.get(id, principal)

    @api.delete(
        "/{id}",
        name="delete-upload",
        summary="Delete an upload now; jobs not yet started with its URL then fail.",
        status_code=204,
        response_class=Response,
        responses=not_found_doc,
    )
    async def delete_upload_route(id: str, principal: Principal = any_credential) -> Response:
        return await handlers.delete(id, principal)

    @api.get(
        "/{id}/content",
        name="download-upload",
        summary="Download an upload's file (its owner, until `expiresAt`).",
        response_class=FileResponse,
        responses={
            200: {"description": "The file, in its sniffed type."},
            307: {"description": "Where uploads lie in a bucket: to a short presigned URL."},
            **not_found_doc,
        },
    )
    async def download_upload(
        request: Request, id: str, principal: Principal = any_credential
    ) -> Response:
        return await handlers.content(request, id, principal)

    return api
