"""Stored objects behind one interface: a folder on this machine, or an S3 bucket.

Results (the workers' MP4s) use it today and uploaded inputs will; each kind of
object is an *area* (`results`, `uploads`) with its own folder, or its own
prefix in the bucket. `LIPSYNC_STORAGE_URL` picks the implementation: unset,
the folder the caller names (what `make run` has always used); `s3://bucket/prefix`,
the bucket, with objects at `prefix/<area>/<key>`.

The rules every implementation keeps:

* a key is one or more plain names joined by `/` (no `.`-led name, no empty
  one), so no key reaches outside its area, on a disk or in a bucket;
* `put(key, path)` takes the file: the source is gone afterwards, and a reader
  sees the whole object or none (a folder renames into place; S3 shows an
  object only once its multipart upload completes);
* `delete(key)` removes the object at once, and is harmless when it is gone;
* `open(key)` streams it, raising `NotStored` when there is none;
* `url(key, expires_s)` is a presigned URL that anyone can use for that long,
  or None where the store has no URLs of its own (a folder: the gateway serves
  it); `upload_url` the same for a PUT straight into the store;
* `expire_after(seconds)` asks the store to drop objects that old by itself (an
  S3 lifecycle rule); the retention sweep of job_service stays the guarantee.

A store that clients may send files into themselves (a bucket, not a folder)
also has the methods of `DirectUploadStore`: a presigned POST form for one key
and one exact size, the size and first bytes of an object, and a copy inside
the store. They are a protocol apart, so a folder store need not pretend to
have them; callers ask `isinstance(store, DirectUploadStore)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from lipsync_common.config import StorageSettings

# One name of a key; no leading dot, so neither `..` nor hidden partial files.
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")
MAX_KEY_CHARS = 1024


class NotStored(LookupError):
    """There is no object under that key."""


def check_key(key: str) -> str:
    """`key` if it is a valid object key; ValueError otherwise."""
    names = key.split("/")
    if len(key) > MAX_KEY_CHARS or not all(_NAME.fullmatch(n) for n in names):
        raise ValueError(f"not an object key: {key!r}")
    return key


class ObjectStore(Protocol):
    def put(self, key: str, source: Path) -> str:
        """Store the file `source` under `key` (taking it); returns the key."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object now; False when there was none."""
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the object; NotStored when there is none."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's file on this machine; None if missing or not a local store."""
        ...

    def url(self, key: str, expires_s: int, method: str = "GET") -> str | None:
        """A presigned GET (or HEAD) URL valid `expires_s`; None without URLs."""
        ...

    def upload_url(self, key: str, expires_s: int) -> str | None:
        """A presigned PUT URL for `key` valid `expires_s`; None without URLs."""
        ...

    def expire_after(self, seconds: float) -> bool:
        """Have the store drop objects older than `seconds`; False if it cannot."""
        ...


@dataclass(frozen=True)
class PresignedPost:
    """A form that sends one file straight into the store: a `multipart/form-data`
    POST to `url` with every member of `fields`, then the file as the last part."""

    url: str
    fields: Mapping[str, str]


@runtime_checkable
class DirectUploadStore(Protocol):
    def post_form(self, key: str, size: int, content_type: str, expires_s: int) -> PresignedPost:
        """A presigned POST valid `expires_s` that stores exactly `size` bytes at `key`,
        typed `content_type`; the store itself refuses any other key, size or type."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is none."""
        ...

    def read_start(self, key: str, count: int) -> bytes:
        """The first `count` bytes (fewer if the object is shorter); NotStored if none."""
        ...

    def copy(self, source: str, target: str, content_type: str) -> None:
        """Copy the object `source` to `target` inside the store, typed `content_type`."""
        ...


def open_store(area: str, local_root: Path, settings: StorageSettings | None = None) -> ObjectStore:
    """The store of one area: the folder `local_root`, or `<prefix>/<area>/` in
    the bucket of `LIPSYNC_STORAGE_URL`."""
    settings = settings or StorageSettings.from_env()
    if settings.bucket is None:
        from lipsync_common.local_store import LocalStore

        return LocalStore(local_root)
    # Imported only here: boto3 takes a while to import, and `make run` never needs it.
    from lipsync_common.s3_store import S3Store

    return S3Store.connect(settings, f"{settings.prefix}{area}/")
