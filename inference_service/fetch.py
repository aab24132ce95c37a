"""Downloads job inputs through the URL guard, within size and time limits.

The client must use `lipsync_common.guarded_http.GuardedTransport`, which
resolves each host once, refuses private and local addresses (unless the
operator allows them) and connects to the address it checked. Redirects are
followed by hand so that every hop is parsed here and connected through that
guard: a public URL must not be able to redirect the worker into the private
network.

The HTTP client's timeout is per read, which a server trickling one byte at a
time never trips; so each download also has a total deadline, over every hop
from the first connect to the last byte.

An upload of this platform (lipsync_common/uploads.py) is not downloaded at
all: `copy_upload` reads it from the store, within the same size limits, so it
needs no exception to the URL guard and cannot be used to reach anything else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urljoin

import httpx

from inference_service.failures import JobFailure
from lipsync_common.netguard import UnsafeURLError, parse_url
from lipsync_common.storage import NotStored, ObjectStore
from lipsync_common.uploads import file_key, gone_message, read_upload

MAX_REDIRECTS = 5
CHUNK = 256 * 1024


async def download(
    client: httpx.AsyncClient,
    field: str,
    url: str,
    dest: Path,
    max_bytes: int,
    *,
    timeout_s: float,
) -> int:
    """Download `url` to `dest` within `timeout_s` in all; returns the byte count.

    `field` names the input in the messages the user sees.
    """
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await _download(client, field, url, dest, max_bytes)
    except TimeoutError:
        if not deadline.expired():
            raise  # some other timeout, not this deadline
        raise JobFailure(f"{field} took longer than {timeout_s:g} s to download") from None


async def _download(
    client: httpx.AsyncClient,
    field: str,
    url: str,
    dest: Path,
    max_bytes: int,
) -> int:
    label = field.removeprefix("formState.")
    for _ in range(MAX_REDIRECTS + 1):
        try:
            url = parse_url(url, ("http", "https")).url
            async with client.stream("GET", url) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise JobFailure(
                        f"{label} could not be downloaded: {url} answered "
                        f"HTTP {response.status_code}"
                    )
                declared = int(response.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise JobFailure(_too_large(label, max_bytes))
                size = 0
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes(CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise JobFailure(_too_large(label, max_bytes))
                        out.write(chunk)
                if size == 0:
                    raise JobFailure(f"{label} could not be downloaded: {url} is empty")
                return size
        except UnsafeURLError as exc:
            raise JobFailure(f"{field}: {exc}") from None
        except httpx.HTTPError as exc:
            raise JobFailure(
                f"{label} could not be downloaded: {type(exc).__name__} for {url}"
            ) from None
    raise JobFailure(f"{label} could not be downloaded: too many redirects from {url}")


def _too_large(label: str, max_bytes: int) -> str:
    return f"{label} is larger than the limit of {max_bytes // (1024 * 1024)} MB"


def copy_upload(
    store: ObjectStore,
    field: str,
    upload_id: str,
    dest: Path,
    max_bytes: int,
    account_id: str,
    now: float | None = None,
) -> int:
    """Copy an upload of this platform to `dest` from the store, not over HTTP.

    Blocking (a bucket is a network read): run it in a thread. The size limit of
    the field applies as to a download; `account_id` empty (an estimate, whose
    URLs the gateway checked) skips the owner check. Returns the byte count.
    """
    label = field.removeprefix("formState.")
    upload = read_upload(store, upload_id, now)
    if upload is None:
        raise JobFailure(gone_message(label))
    if account_id and upload.account_id != account_id:
        raise JobFailure(f"{label} is not an upload of this account")
    if upload.size > max_bytes:
        raise JobFailure(_too_large(label, max_bytes))
    size = 0
    try:
        with store.open(file_key(upload_id)) as source, dest.open("wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise JobFailure(_too_large(label, max_bytes))
                out.write(chunk)
    except NotStored:
        raise JobFailure(gone_message(label)) from None
    return size
