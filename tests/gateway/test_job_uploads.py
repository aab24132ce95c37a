"""JobUploads: which upload URLs of a job body are refused, on a real local store.

The routes' answers (422 naming the field, no job made) are tested with the
uploads routes in test_routes_uploads.py and test_direct_uploads.py; this is
the rule itself, and what it does when the store cannot answer.
"""

from __future__ import annotations

from pathlib import Path

from gateway.job_uploads import JobUploads
from gateway.upload_owners import UploadOwners
from lipsync_common.local_store import LocalStore
from lipsync_common.uploads import Upload, content_url, store_upload

PUBLIC = "https://api.example.com"
OWNERS = UploadOwners(PUBLIC, b"k" * 32)
NOW = 1_000_000.0


def stored(root: Path, account_id: str) -> str:
    """A live upload of `account_id` in the store at `root`; its URL."""
    upload_id = OWNERS.new_id(account_id)
    source = root.parent / f"{upload_id}.wav"
    source.write_bytes(b"RIFF" + b"x" * 64)
    upload = Upload(upload_id, account_id, "audio", 68, "audio/wav", NOW, NOW + 60)
    store_upload(LocalStore(root), upload, source)
    return content_url(PUBLIC, upload_id)


async def test_live_uploads_pass_and_each_missing_one_is_named_in_order(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    live = stored(root, "acct_a")
    never = content_url(PUBLIC, OWNERS.new_id("acct_a"))
    theirs = stored(root, "acct_b")
    checks = JobUploads(OWNERS, LocalStore(root), clock=lambda: NOW)

    body = {"formState": {"image": never, "audio": live, "mask_image": theirs, "x": 1}}
    errors = await checks.field_errors(body, "acct_a")
    assert [(e.field, e.message) for e in errors] == [
        (
            "formState.image",
            "formState.image is an upload that has expired, was deleted or was never"
            " completed; upload the file again",
        ),
        ("formState.mask_image", "formState.mask_image is not an upload of this account"),
    ]
    # Public URLs are not read at all; a body without a form has nothing to check.
    assert await checks.field_errors({"formState": {"audio": "https://x.test/a.wav"}}, "a") == []
    assert await checks.field_errors({"formState": "no"}, "acct_a") == []


async def test_an_upload_past_its_expiry_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    live = stored(root, "acct_a")
    later = JobUploads(OWNERS, LocalStore(root), clock=lambda: NOW + 60)
    errors = await later.field_errors({"formState": {"audio": live}}, "acct_a")
    assert [e.field for e in errors] == ["formState.audio"]


async def test_a_store_that_cannot_answer_refuses_nothing(tmp_path: Path) -> None:
    # The upload's folder is a file: its read fails with NotADirectoryError, a store error,
    # not a missing object. Not the customer's fault: the job goes on, the worker decides.
    store = LocalStore(tmp_path / "uploads")
    upload_id = OWNERS.new_id("acct_a")
    (tmp_path / "uploads" / upload_id).write_bytes(b"not a folder")
    checks = JobUploads(OWNERS, store, clock=lambda: NOW)
    url = content_url(PUBLIC, upload_id)
    assert await checks.field_errors({"formState": {"audio": url}}, "acct_a") == []
