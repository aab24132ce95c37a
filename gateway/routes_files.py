"""Result downloads: `GET /files/{object_key}` behind a signed, expiring URL.

The URL itself is the credential (no API key), so anything short of a valid
signature, including an expired one, is the same 404 as a missing file.

From a folder (one machine) the gateway serves the file itself. From a bucket
it answers `307` to a presigned URL of the object, valid `REDIRECT_S`, rather
than handing clients presigned URLs in the job: a job's URL must work for the
whole retention period, which can be any length, while an S3 presigned URL
lives at most 7 days, and only as long as the credentials that signed it (a
pod's role credentials last hours). So the job carries the gateway's own
signed URL, the same locally and in a cluster, and each download gets a fresh,
short presigned one; the bytes still go straight from the bucket to the client.
Once the object is deleted the bucket answers the redirect with 404. The
redirect is not to be cached (`no-store`): the presigned URL dies first.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from gateway import openapi
from gateway.held_file import HeldFileResponse
from gateway.problems import Problem
from lipsync_common.local_store import LocalStore
from lipsync_common.signing import verify
from lipsync_common.storage import ObjectStore

# Object keys are flat file names: no separators, so no way out of the folder.
OBJECT_KEY = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_OBJECT_KEY_CHARS = 255
# Long enough to start a download; a resumed one comes back for a new URL.
REDIRECT_S = 300


def not_found() -> Problem:
    return Problem(404, "not_found", "not found")


def plain_key(object_key: str) -> bool:
    return (
        len(object_key) <= MAX_OBJECT_KEY_CHARS
        and OBJECT_KEY.fullmatch(object_key) is not None
        and ".." not in object_key
        and not object_key.startswith(".")
    )


def resolve(results_dir: Path, object_key: str) -> Path:
    """The file for `object_key` in a results folder, refusing anything that is
    not a plain name or leads outside the folder."""
    path = LocalStore(results_dir).local_path(object_key) if plain_key(object_key) else None
    if path is None:
        raise not_found()
    return path


def router(
    results: ObjectStore, signing_key: bytes, clock: Callable[[], float] = time.time
) -> APIRouter:
    api = APIRouter(tags=["files"])

    @api.get(
        "/files/{object_key}",
        name="download-result",
        summary="Download a result MP4 through the signed URL of a completed job.",
        response_class=FileResponse,
        responses={
            200: {"content": {"video/mp4": {}}, "description": "The MP4; Range is supported."},
            307: {"description": "Where results lie in a bucket: to a short presigned URL."},
            **openapi.problem_responses({404: "unknown file, bad signature or expired URL"}),
        },
    )
    async def download(
        request: Request, object_key: str, expires: str = "", sig: str = ""
    ) -> Response:
        # expires is read as text so that junk is the same 404, not a 422.
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or not sig:
            raise not_found()
        now = clock()
        if not verify(signing_key, object_key, int(expires), sig, now):
            raise not_found()
        if not plain_key(object_key):
            raise not_found()
        # Presigning is local computation (no request to the bucket), but boto3's
        # first call loads its endpoint data: a thread keeps the loop free.
        method = "HEAD" if request.method == "HEAD" else "GET"
        url = await asyncio.to_thread(results.url, object_key, REDIRECT_S, method)
        if url is not None:
            return RedirectResponse(
                url,
                status_code=307,
                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
            )
        path = results.local_path(object_key)
        if path is None:
            raise not_found()
        # A shared cache must not leak the file, nor keep it past the URL.
        max_age = max(0, min(3600, int(expires) - int(now)))
        try:
            return HeldFileResponse(
                path,
                media_type="video/mp4",
                headers={
                    "Cache-Control": f"private, max-age={max_age}",
                    "X-Content-Type-Options": "nosniff",
                },
            )
        except FileNotFoundError:
            raise not_found() from None  # deleted since it was looked up

    # HEAD lets a client learn the size before a ranged download.
    api.add_api_route(
        "/files/{object_key}",
        download,
        methods=["HEAD"],
        name="download-result-head",
        response_class=FileResponse,
        include_in_schema=False,
    )
    return api
