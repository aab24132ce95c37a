"""Uploaded inputs: the `uploads` area of the object store (lipsync_common/storage.py).

An upload is two objects under its id: `<id>/file`, the bytes, and
`<id>/meta.json`, who owns it, its kind, size, type and expiry. The metadata
lies next to the file, in the same store, rather than in a table of
job_service: the gateway has no database (ARCHITECTURE.md), every gateway
replica and every worker already reach the store, and an upload then lives and
dies as one unit in one place (a delete or an expiry removes both objects, and
no table can disagree with the files). The file is stored before the metadata,
so a reader that finds the metadata finds the whole file.

Its URL is `<LIPSYNC_PUBLIC_URL>/api/v1/uploads/<id>/content`: the owner can
download it there, and a job may name it in any media field. The workers never
fetch such a URL over HTTP: they recognise it (`upload_id_in`) and copy the
file from the store, so no private-address exception is needed for them.

A direct upload (gateway/direct_uploads.py) goes into a bucket without the
gateway: `<id>/pending.json` says who asked for it and how many bytes they
declared, the client sends the file to `<id>/incoming`, and its completion
copies it to `<id>/file` once its content is checked, writes `meta.json` and
removes the other two. Until then there is no `meta.json`, so no reader sees
the upload; one never completed is dropped with the rest by the lifecycle rule.

Expiry: `LIPSYNC_UPLOAD_TTL_S` (24 h) after the upload. Readers treat an expired
upload as gone at once; `UploadSweep` then deletes the objects of a folder store,
and a bucket drops them by its lifecycle rule (`expire_after`, set at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from lipsync_common.config import data_dir, env_float, env_str
from lipsync_common.local_store import LocalStore
from lipsync_common.storage import NotStored, ObjectStore, open_store

log = logging.getLogger(__name__)

AREA = "uploads"
URL_PATH = "/api/v1/uploads/"
CONTENT_SUFFIX = "/content"
DEFAULT_TTL_S = 24 * 3600.0
# Metadata is tiny; anything bigger is not ours.
MAX_META_BYTES = 64 * 1024


def uploads_dir() -> Path:
    """`LIPSYNC_UPLOADS_DIR`, by default `uploads/` under the data directory."""
    return Path(env_str("LIPSYNC_UPLOADS_DIR", str(data_dir() / "uploads")))


def upload_ttl_s() -> float:
    """`LIPSYNC_UPLOAD_TTL_S`: how long an upload lives."""
    return max(1.0, env_float("LIPSYNC_UPLOAD_TTL_S", DEFAULT_TTL_S))


def upload_store(local_dir: Path) -> ObjectStore:
    """The uploads area: `local_dir`, or the bucket of `LIPSYNC_STORAGE_URL`."""
    return open_store(AREA, local_dir)


def file_key(upload_id: str) -> str:
    return f"{upload_id}/file"


def meta_key(upload_id: str) -> str:
    return f"{upload_id}/meta.json"


def incoming_key(upload_id: str) -> str:
    return f"{upload_id}/incoming"


def pending_key(upload_id: str) -> str:
    return f"{upload_id}/pending.json"


def content_url(public_url: str, upload_id: str) -> str:
    return f"{public_url.rstrip('/')}{URL_PATH}{upload_id}{CONTENT_SUFFIX}"


def upload_id_in(url: str, public_url: str) -> str | None:
    """The upload id if `url` is an upload URL of this platform, else None."""
    prefix = f"{public_url.rstrip('/')}{URL_PATH}"
    if not url.startswith(prefix) or not url.endswith(CONTENT_SUFFIX):
        return None
    upload_id = url[len(prefix) : -len(CONTENT_SUFFIX)]
    if not upload_id or "/" in upload_id or not upload_id.replace("_", "").isalnum():
        return None
    return upload_id


# The field types a metadata record may hold, by the name its annotation spells.
_CASTS: dict[str, Callable[[Any], Any]] = {"str": str, "int": int, "float": float}


class _Record:
    """What `meta.json` and `pending.json` share: an expiry, and JSON of the fields."""

    expires_at: float
    # What makes a subclass a dataclass to the type checker (``fields``, ``asdict``).
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        value = json.loads(raw)
        # Cast each field, so a stored number or string of the wrong type is caught here.
        return cls(**{f.name: _CASTS[str(f.type)](value[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class Upload(_Record):
    """An upload's metadata, as `meta.json` holds it."""

    id: str
    account_id: str
    kind: str
    size: int
    content_type: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class PendingUpload(_Record):
    """A direct upload asked for but not completed, as `pending.json` holds it.

    `created_at` and `expires_at` become the upload's own, so that its expiry
    counts from the request, never from later than the bucket's object does."""

    id: str
    account_id: str
    # The size declared, which the form's policy holds the bucket to.
    size: int
    created_at: float
    expires_at: float


def put_bytes(store: ObjectStore, key: str, raw: bytes, folder: Path) -> None:
    """Store small `raw` bytes at `key` through a temporary file in `folder`."""
    with tempfile.NamedTemporaryFile("wb", delete=False, dir=folder, prefix=".upload-") as out:
        out.write(raw)
    try:
        store.put(key, Path(out.name))
    finally:
        Path(out.name).unlink(missing_ok=True)


def store_upload(store: ObjectStore, upload: Upload, source: Path) -> None:
    """Store the file (taking `source`), then its metadata: blocking I/O."""
    store.put(file_key(upload.id), source)
    put_bytes(store, meta_key(upload.id), upload.to_json(), source.parent)


def read_pending(
    store: ObjectStore, upload_id: str, now: float | None = None
) -> PendingUpload | None:
    """The live pending direct upload `upload_id`, or None (unknown, unreadable, expired)."""
    try:
        with store.open(pending_key(upload_id)) as stream:
            pending = PendingUpload.from_json(stream.read(MAX_META_BYTES + 1))
    except NotStored:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable pending upload", extra={"fields": {"upload_id": upload_id}})
        return None
    if pending.id != upload_id or pending.expired(now):
        return None
    return pending


def discard_pending(store: ObjectStore, upload_id: str) -> None:
    """Remove a direct upload's request and whatever the client sent: blocking I/O."""
    store.delete(pending_key(upload_id))
    store.delete(incoming_key(upload_id))


def gone_message(field: str) -> str:
    """What a job naming a missing upload is told, by the gateway (422) or the worker."""
    return (
        f"{field} is an upload that has expired, was deleted or was never completed;"
        " upload the file again"
    )


def lookup_upload(store: ObjectStore, upload_id: str, now: float | None = None) -> Upload | None:
    """The live upload `upload_id`, or None if unknown, unreadable or expired; a store that
    cannot answer raises (the gateway's job check tells that from a missing upload)."""
    try:
        with store.open(meta_key(upload_id)) as stream:
            raw = stream.read(MAX_META_BYTES + 1)
    except (NotStored, ValueError):  # ValueError: a key the store refuses
        return None
    try:
        upload = Upload.from_json(raw)
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable upload metadata", extra={"fields": {"upload_id": upload_id}})
        return None
    if upload.id != upload_id or upload.expired(now):
        return None
    return upload


def read_upload(store: ObjectStore, upload_id: str, now: float | None = None) -> Upload | None:
    """The live upload `upload_id`, or None if unknown, unreadable, expired or not read (a
    store error, logged)."""
    try:
        return lookup_upload(store, upload_id, now)
    except Exception:
        log.exception("upload metadata not read", extra={"fields": {"upload_id": upload_id}})
        return None


def delete_upload(store: ObjectStore, upload_id: str) -> None:
    """Remove both objects now; the metadata first, so the upload is gone for readers."""
    store.delete(meta_key(upload_id))
    store.delete(file_key(upload_id))


def sweep_folder(root: Path, now: float | None = None) -> int:
    """Delete the expired uploads of a folder store; how many were removed.

    Also removes what a stopped gateway left behind, judged by age as there is
    nothing else to judge by: a file whose metadata never landed (stopped between
    the two puts), and partial bodies in `.incoming`, once older than the TTL."""
    now = time.time() if now is None else now
    stale = now - upload_ttl_s()
    store = LocalStore(root)
    removed = 0
    for partial in (root / ".incoming").glob(".upload-*"):
        with contextlib.suppress(OSError):
            if partial.stat().st_mtime < stale:
                partial.unlink()
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        upload_id = folder.name
        meta = folder / "meta.json"
        try:
            if meta.is_file():
                due = Upload.from_json(meta.read_bytes()[: MAX_META_BYTES + 1]).expired(now)
            else:
                due = folder.stat().st_mtime < stale
        except (OSError, ValueError, KeyError, TypeError):
            due = False
        if not due:
            continue
        try:
            delete_upload(store, upload_id)
            with contextlib.suppress(OSError):
                folder.rmdir()
        except (OSError, ValueError):
            log.exception("expired upload not removed", extra={"fields": {"id": upload_id}})
            continue
        removed += 1
    return removed


class UploadSweep:
    """Deletes expired uploads every `interval_s`, in the process that runs it.

    On a folder store it removes them itself; in a bucket it sets the lifecycle
    rule once at start and leaves the rest to it (a bucket has no cheap listing
    through ObjectStore, and every reader already refuses an expired upload)."""

    def __init__(self, store: ObjectStore, ttl_s: float, interval_s: float = 300.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not isinstance(self.store, LocalStore):
            try:
                await asyncio.to_thread(self.store.expire_after, self.ttl_s)
            except Exception:
                log.exception("uploads lifecycle rule not set")
            return
        self._task = asyncio.create_task(self._run(self.store.root))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, root: Path) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(sweep_folder, root)
                if removed:
                    log.info("expired uploads removed", extra={"fields": {"count": removed}})
            except Exception:
                log.exception("uploads sweep failed")
            await asyncio.sleep(self.interval_s)
