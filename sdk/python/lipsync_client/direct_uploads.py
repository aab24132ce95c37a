"""Direct uploads: a file of known size goes straight to the bucket, not through the API.

Where the server keeps uploads in a bucket, `POST /api/v1/uploads/direct
{"bytes": N}` answers a presigned POST form for exactly N bytes, valid 15
minutes; the file is sent with it to the bucket, with no credential (the
form's policy is the permission), then `POST /api/v1/uploads/{id}/complete`
makes it an upload like any other. A large video thus never passes through
the API's gateway.

A server that keeps uploads in local files answers 409
`direct_uploads_unavailable`; an older one has no such route (404, or 405:
its `/uploads/{id}` takes no POST). Either way the multipart upload is sent
instead, and the client remembers the answer, so it asks once, not per file.
A file whose size is not known beforehand (a pipe, a stream that cannot be
sent again from its start) always goes multipart.

The start carries an `Idempotency-Key` of its own (`_base.create_headers`, as
a job's create does), so when its answer is lost and the request retried, the
server answers the same upload, not a second one.
The bucket's POST is retried as API calls are (connection errors, 429, 5xx),
the form staying valid; its 4xx (S3's XML, such as `EntityTooLarge` for a
file that changed size) is `BucketError`, never retried.

Both clients take the same steps; this module decides everything but the
sending, which each does in its own way (blocking or awaited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lipsync_client.errors import APIError
from lipsync_client.media import ProgressReader, content_type

DIRECT_PATH = "/api/v1/uploads/direct"
FILE_FIELD = "file"


def upload_path(upload_id: str) -> str:
    if not upload_id or "/" in upload_id:
        raise ValueError(f"not an upload id: {upload_id!r}")
    return f"/api/v1/uploads/{upload_id}"


def known_size(reader: ProgressReader) -> int | None:
    """The bytes a direct upload would declare: known, and sendable again on a retry."""
    return reader.total if reader.seekable() else None


class DirectChoice:
    """One per client: whether to try the direct route, and what the server said of it.

    `mode`: None tries it for every file of known size until the server says
    it has none; True insists (its refusal is raised); False never asks.
    """

    def __init__(self, mode: bool | None) -> None:
        self.mode = mode
        # Set once the server said it has no direct uploads: it is not asked again.
        self.unavailable = False

    def wanted(self, direct: bool | None, size: int | None) -> bool:
        mode = self.mode if direct is None else direct
        if mode is False:
            return False
        if size is None or size < 1:
            if mode:
                raise ValueError(
                    "a direct upload needs a file of known size that can be read again:"
                    " a path or a seekable binary file"
                )
            return False
        return mode is True or not self.unavailable

    def refused(self, error: APIError, direct: bool | None) -> bool:
        """Whether `error`, the answer to POST /uploads/direct, means: send it multipart."""
        refusal = (
            (error.status == 409 and error.code == "direct_uploads_unavailable")
            or (error.status == 404 and error.code in ("", "not_found"))
            or error.status == 405
        )
        if not refusal:
            return False
        self.unavailable = True
        mode = self.mode if direct is None else direct
        return mode is not True


def start_body(size: int) -> dict[str, int]:
    return {"bytes": size}


@dataclass(frozen=True)
class DirectForm:
    """The answer of POST /uploads/direct: the pending upload and its presigned form."""

    id: str
    url: str
    fields: dict[str, str]
    complete_url: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DirectForm:
        form = data["upload"]
        if str(form.get("method") or "POST").upper() != "POST":
            raise ValueError(f"unsupported direct upload method {form.get('method')!r}")
        return cls(
            id=str(data["id"]),
            url=str(form["url"]),
            fields={str(k): str(v) for k, v in (form.get("fields") or {}).items()},
            complete_url=str(data.get("completeUrl") or ""),
        )

    def complete_target(self, base_url: str) -> str:
        """Where to POST the completion: the answer's URL when it is on the API's base
        URL, else the same path on it, so the API key never goes to another host (a
        gateway behind a proxy may name its own public address)."""
        if self.complete_url.startswith(base_url.rstrip("/") + "/"):
            return self.complete_url
        return f"{upload_path(self.id)}/complete"

    def request(self, reader: ProgressReader) -> dict[str, Any]:
        """httpx's `data` and `files` of the bucket's POST: the fields, then the file.

        httpx puts `data` before `files`, as S3 requires of the file part; each
        try sends the whole file again from its start (progress restarts too).
        """
        reader.seek(0)
        return {
            "data": self.fields,
            "files": {FILE_FIELD: (reader.name, reader, content_type(reader.name))},
        }
