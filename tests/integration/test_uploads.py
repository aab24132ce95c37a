"""Uploads on the real stack: local files in, a completed job out, owners kept apart.

The upload URLs need the owner's credential over HTTP, which the worker does
not have: a job that completes with them was read from storage, as it must be.
On a bucket, with a folder per process, the worker can only have read them there.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest

from lipsync_common.s3_store import LIFECYCLE_RULE_ID
from tests.integration.conftest import Platform
from tests.integration.harness import MediaHost, bearer, wait_until_finished
from tests.integration.test_s3_stack import stack_on_s3
from tests.s3_server import running_s3

pytestmark = pytest.mark.integration


def upload(platform: Platform, key: str, path: Path) -> dict:
    with path.open("rb") as file:
        response = platform.client.post(
            "/api/v1/uploads", files={"file": (path.name, file)}, headers=bearer(key)
        )
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


def image_job(face: dict, voice: dict) -> dict:
    return {"formState": {"image": face["url"], "audio": voice["url"], "seed": 3}}


def test_uploaded_files_make_a_job_and_stay_their_owners(
    platform: Platform, media_dir: Path
) -> None:
    account_id, key = platform.account(credits=100)
    _, other_key = platform.account(credits=100)
    face = upload(platform, key, media_dir / "portrait.jpg")
    voice = upload(platform, key, media_dir / "speech-3s.wav")
    assert (face["kind"], face["contentType"]) == ("image", "image/jpeg")
    assert (voice["kind"], voice["contentType"]) == ("audio", "audio/wav")
    assert face["bytes"] == (media_dir / "portrait.jpg").stat().st_size

    created = platform.client.post(
        "/api/v1/lipsync-image", json=image_job(face, voice), headers=bearer(key)
    )
    assert created.status_code == 202, created.text
    job = wait_until_finished(platform.client, created.json()["id"], key, timeout_s=120)
    assert job["status"] == "completed", job["error"]
    assert platform.settled_balance(account_id, 100 - job["credits"]) == 100 - job["credits"]

    # Another account cannot use, read or download them.
    theirs = platform.client.post(
        "/api/v1/lipsync-image", json=image_job(face, voice), headers=bearer(other_key)
    )
    assert theirs.status_code == 422, theirs.text
    assert [e["field"] for e in theirs.json()["errors"]] == ["formState.image", "formState.audio"]
    assert platform.client.get(face["url"], headers=bearer(other_key)).status_code == 404
    assert (
        platform.client.get(f"/api/v1/uploads/{face['id']}", headers=bearer(other_key)).status_code
        == 404
    )

    # The owner downloads them until they are deleted; a job naming one after that
    # is refused at once, naming the field, and costs nothing.
    downloaded = platform.client.get(voice["url"], headers=bearer(key))
    assert downloaded.content == (media_dir / "speech-3s.wav").read_bytes()
    assert (
        platform.client.delete(f"/api/v1/uploads/{voice['id']}", headers=bearer(key)).status_code
        == 204
    )
    assert (
        platform.client.get(f"/api/v1/uploads/{voice['id']}", headers=bearer(key)).status_code
        == 404
    )
    assert platform.client.get(voice["url"], headers=bearer(key)).status_code == 404
    balance = platform.balance(account_id)
    late = platform.client.post(
        "/api/v1/lipsync-image", json=image_job(face, voice), headers=bearer(key)
    )
    assert late.status_code == 422, late.text
    assert late.json()["errors"] == [
        {
            "field": "formState.audio",
            "message": "formState.audio is an upload that has expired, was deleted or was"
            " never completed; upload the file again",
        }
    ]
    assert platform.balance(account_id) == balance


def test_uploads_in_a_bucket_are_shared_by_the_gateway_and_the_workers(
    tmp_path_factory: pytest.TempPathFactory, media_dir: Path
) -> None:
    # Every process with its own folder: the worker can get the upload only from the bucket.
    root = tmp_path_factory.mktemp("s3-uploads")
    media = MediaHost(media_dir)
    with contextlib.closing(media), running_s3(root / "seaweedfs") as s3:
        bucket = s3.create_bucket()
        with stack_on_s3(root, s3, bucket) as stack:
            with httpx.Client(base_url=stack.http_url, timeout=30) as client:
                platform = Platform(stack, stack.env, media, client)
                _, key = platform.account(credits=50)
                face = upload(platform, key, media_dir / "portrait.jpg")
                voice = upload(platform, key, media_dir / "speech-3s.wav")
                keys = s3.keys(bucket)
                for item in (face, voice):
                    assert f"lipsync/uploads/{item['id']}/file" in keys
                    assert f"lipsync/uploads/{item['id']}/meta.json" in keys
                created = client.post(
                    "/api/v1/lipsync-image", json=image_job(face, voice), headers=bearer(key)
                )
                assert created.status_code == 202, created.text
                job = wait_until_finished(client, created.json()["id"], key, timeout_s=120)
                assert job["status"] == "completed", job["error"]

                # The owner's download is a redirect to the bucket.
                redirect = client.get(face["url"], headers=bearer(key))
                assert redirect.status_code == 307
                assert redirect.headers["location"].startswith(f"{s3.endpoint_url}/{bucket}/")
                assert (
                    httpx.get(redirect.headers["location"], timeout=30).content
                    == (media_dir / "portrait.jpg").read_bytes()
                )

                # job_service set the uploads' expiry: 24 h is one day.
                rules = s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
                ours = [r for r in rules if r["ID"] == f"{LIFECYCLE_RULE_ID}-lipsync-uploads"]
                assert [r["Expiration"] for r in ours] == [{"Days": 1}]

                deleted = client.delete(f"/api/v1/uploads/{face['id']}", headers=bearer(key))
                assert deleted.status_code == 204
                assert not [k for k in s3.keys(bucket) if face["id"] in k]
