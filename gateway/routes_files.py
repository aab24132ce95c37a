"""Result downloads: `GET /files/{object_key}` behind a signed, expiring URL.

The URL itself is the credential (no API key), so anything short of a valid
signature, including an expired one, is the same 404 as a missing file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from gateway import openapi
from gateway.problems import Problem
from lipsync_common.signing import verify

# Object keys are flat file names: no separators, so no way out of the folder.
OBJECT_KEY = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_OBJECT_KEY_CHARS = 255


def not_found() -> Problem:
    return Problem(404, "not_found", "not found")


def resolve(results_dir: Path, object_key: str) -> Path:
    """The file for `object_key`, refusing anything that is not a plain name."""
    if (
        len(object_key) > MAX_OBJECT_KEY_CHARS
        or not OBJECT_KEY.fullmatch(object_key)
        or ".." in object_key
        or object_key.startswith(".")
    ):
        raise not_found()
    path = (results_dir / object_key).resolve()
    if path.parent != results_dir.resolve() or not path.is_file():
        raise not_found()
    return path


def router(
    results_dir: Path, signing_key: bytes, clock: Callable[[], float] = time.time
) -> APIRouter:
    api = APIRouter(tags=["files"])

    @api.get(
        "/files/{object_key}",
        name="download-result",
        summary="Download a result MP4 through the signed URL of a completed job.",
        response_class=FileResponse,
        responses={
            200: {"content": {"video/mp4": {}}, "description": "The MP4; Range is supported."},
            **openapi.problem_responses({404: "unknown file, bad signature or expired URL"}),
        },
    )
    async def download(object_key: str, expires: str = "", sig: str = "") -> FileResponse:
        # expires is read as text so that junk is the same 404, not a 422.
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or not sig:
            raise not_found()
        now = clock()
        if not verify(signing_key, object_key, int(expires), sig, now):
            raise not_found()
        path = resolve(results_dir, object_key)
        return FileResponse(
            path,
            media_type="video/mp4",
            headers={
                # A shared cache must not leak the file, nor keep it past the URL.
                "Cache-Control": f"private, max-age={max(0, min(3600, int(expires) - int(now)))}",
                "X-Content-Type-Options": "nosniff",
            },
        )

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
