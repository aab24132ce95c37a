"""The worker's copy of an upload: from the store, within the limits, for its owner only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from inference_service.failures import JobFailure
from inference_service.fetch import copy_upload
from lipsync_common.local_store import LocalStore
from lipsync_common.uploads import (
    Upload,
    content_url,
    delete_upload,
    file_key,
    store_upload,
    upload_id_in,
)

PUBLIC = "http://api.example:8080"
NOW = 1_800_000_000.0


def stored(tmp_path: Path, content: bytes, ttl_s: float = 60.0) -> tuple[LocalStore, Upload]:
    store = LocalStore(tmp_path / "uploads")
    source = tmp_path / "incoming.wav"
    source.write_bytes(content)
    upload = Upload("up_abc", "acct-1", "audio", len(content), "audio/wav", NOW, NOW + ttl_s)
    store_upload(store, upload, source)
    return store, upload


def test_upload_urls_are_recognised_by_the_public_url_only() -> None:
    url = content_url(PUBLIC + "/", "up_abc")
    assert url == f"{PUBLIC}/api/v1/uploads/up_abc/content"
    assert upload_id_in(url, PUBLIC) == "up_abc"
    assert upload_id_in(url, "http://elsewhere.example") is None
    assert upload_id_in(f"{PUBLIC}/api/v1/uploads/up_abc", PUBLIC) is None
    assert upload_id_in(f"{PUBLIC}/api/v1/uploads/../files/x/content", PUBLIC) is None
    assert upload_id_in(f"{PUBLIC}/api/v1/uploads/a/b/content", PUBLIC) is None


def test_the_owners_upload_is_copied(tmp_path: Path) -> None:
    store, upload = stored(tmp_path, b"RIFF" + b"x" * 5000)
    dest = tmp_path / "audio"
    size = copy_upload(store, "formState.audio", upload.id, dest, 10_000, "acct-1", now=NOW)
    assert size == 5004 and dest.read_bytes() == b"RIFF" + b"x" * 5000
    # An estimate (no account) may read it too: the gateway checked its owner.
    assert copy_upload(store, "formState.audio", upload.id, dest, 10_000, "", now=NOW) == 5004


def test_another_accounts_upload_fails_the_job(tmp_path: Path) -> None:
    store, upload = stored(tmp_path, b"RIFF" + b"x" * 100)
    with pytest.raises(JobFailure, match=r"^audio is not an upload of this account$"):
        copy_upload(store, "formState.audio", upload.id, tmp_path / "a", 10_000, "acct-2", now=NOW)


def test_the_size_limit_of_the_field_applies(tmp_path: Path) -> None:
    store, upload = stored(tmp_path, b"RIFF" + b"x" * (2 * 1024 * 1024))
    with pytest.raises(JobFailure, match="audio is larger than the limit of 1 MB"):
        copy_upload(
            store, "formState.audio", upload.id, tmp_path / "a", 1024 * 1024, "acct-1", now=NOW
        )


def test_an_expired_or_deleted_upload_says_to_upload_again(tmp_path: Path) -> None:
    store, upload = stored(tmp_path, b"RIFF" + b"x" * 100, ttl_s=60)
    message = (
        r"^audio is an upload that has expired, was deleted or was never completed;"
        r" upload the file again$"
    )
    with pytest.raises(JobFailure, match=message):
        copy_upload(store, "formState.audio", upload.id, tmp_path / "a", 10_000, "", now=NOW + 60)
    # Metadata without its file (removed by hand, or half swept) is the same.
    store.delete(file_key(upload.id))
    with pytest.raises(JobFailure, match=message):
        copy_upload(store, "formState.audio", upload.id, tmp_path / "a", 10_000, "", now=NOW)
    delete_upload(store, upload.id)
    with pytest.raises(JobFailure, match=message):
        copy_upload(
            store, "formState.audio", upload.id, tmp_path / "a", 10_000, "", now=time.time()
        )
