"""Direct uploads on the whole stack in a bucket: files sent to SeaweedFS, then a job.

Every process has its own folder (tests/integration/test_s3_stack.py), and the
client sends the files to the bucket with the presigned form itself: nothing
of them passes through the gateway, and the worker can only read them from
the bucket.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lipsync_common.s3_store import LIFECYCLE_RULE_ID
from tests.integration.conftest import Platform
from tests.integration.harness import MediaHost, bearer, wait_until_finished
from tests.integration.test_s3_stack import stack_on_s3
from tests.s3_server import running_s3

pytestmark = pytest.mark.integration


def direct_upload(client: httpx.Client, key: str, content: bytes) -> dict[str, Any]:
    """Ask for a form and send `content` with it to the bucket; the gateway's answer."""
    started = client.post(
        "/api/v1/uploads/direct", json={"bytes": len(content)}, headers=bearer(key)
    )
    assert started.status_code == 201, started.text
    direct: dict[str, Any] = started.json()
    sent = send(direct, content)
    assert sent.status_code == 204, sent.text
    return direct


def send(direct: dict[str, Any], content: bytes) -> httpx.Response:
    form = direct["upload"]
    return httpx.post(form["url"], data=form["fields"], files={"file": ("f", content)}, timeout=30)


def complete(client: httpx.Client, key: str, direct: dict[str, Any]) -> httpx.Response:
    return client.post(direct["completeUrl"], headers=bearer(key))


def test_files_sent_straight_to_the_bucket_make_a_job(
    tmp_path_factory: pytest.TempPathFactory, media_dir: Path
) -> None:
    root = tmp_path_factory.mktemp("s3-direct")
    timings: dict[str, float] = {}
    started = time.monotonic()
    media = MediaHost(media_dir)
    with contextlib.closing(media), running_s3(root / "seaweedfs") as s3:
        bucket = s3.create_bucket()
        with stack_on_s3(root, s3, bucket) as stack:
            timings["start"] = time.monotonic() - started
            with httpx.Client(base_url=stack.http_url, timeout=30) as client:
                platform = Platform(stack, stack.env, media, client)
                account_id, key = platform.account(credits=50)
                _, other_key = platform.account(credits=50)
                jpeg = (media_dir / "portrait.jpg").read_bytes()
                wav = (media_dir / "speech-3s.wav").read_bytes()

                mark = time.monotonic()
                face = direct_upload(client, key, jpeg)
                voice = direct_upload(client, key, wav)
                assert complete(client, other_key, face).status_code == 404
                uploads = []
                for item in (face, voice):
                    done = complete(client, key, item)
                    assert done.status_code == 201, done.text
                    uploads.append(done.json())
                timings["upload"] = time.monotonic() - mark
                assert [(u["kind"], u["contentType"], u["bytes"]) for u in uploads] == [
                    ("image", "image/jpeg", len(jpeg)),
                    ("audio", "audio/wav", len(wav)),
                ]
                keys = s3.keys(bucket)
                for item in uploads:
                    assert [k for k in keys if item["id"] in k] == [
                        f"lipsync/uploads/{item['id']}/file",
                        f"lipsync/uploads/{item['id']}/meta.json",
                    ]

                mark = time.monotonic()
                job_body = {"formState": {"image": uploads[0]["url"], "audio": uploads[1]["url"]}}
                created = client.post("/api/v1/lipsync-image", json=job_body, headers=bearer(key))
                assert created.status_code == 202, created.text
                job = wait_until_finished(client, created.json()["id"], key, timeout_s=120)
                assert job["status"] == "completed", job["error"]
                timings["job"] = time.monotonic() - mark
                assert (
                    platform.settled_balance(account_id, 50 - job["credits"]) == 50 - job["credits"]
                )
                theirs = client.post(
                    "/api/v1/lipsync-image", json=job_body, headers=bearer(other_key)
                )
                assert theirs.status_code == 422

                # A text file is refused at completion and removed from the bucket.
                text = direct_upload(client, key, b"not a picture\n" * 200)
                refused = complete(client, key, text)
                assert refused.status_code == 415, refused.text
                assert refused.json()["code"] == "unsupported_media_type"
                assert [k for k in s3.keys(bucket) if text["id"] in k] == []

                # A body larger than declared: the bucket refuses it, and nothing arrived.
                small = client.post(
                    "/api/v1/uploads/direct", json={"bytes": 1000}, headers=bearer(key)
                ).json()
                bigger = send(small, wav[:1001])
                assert bigger.status_code == 400 and "EntityTooLarge" in bigger.text
                pending = complete(client, key, small)
                assert pending.status_code == 409
                assert pending.json()["code"] == "upload_not_received"

                # Never completed: what it left lies under the uploads area, whose
                # lifecycle rule (set by job_service at start-up) expires it.
                left = [k for k in s3.keys(bucket) if small["id"] in k]
                assert left == [f"lipsync/uploads/{small['id']}/pending.json"]
                rules = s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
                ours = [r for r in rules if r["ID"] == f"{LIFECYCLE_RULE_ID}-lipsync-uploads"]
                assert [r["Filter"]["Prefix"] for r in ours] == ["lipsync/uploads/"]
                assert [r["Expiration"] for r in ours] == [{"Days": 1}]
    timings["total"] = time.monotonic() - started
    print("direct upload timings (s):", {k: round(v, 2) for k, v in timings.items()})
