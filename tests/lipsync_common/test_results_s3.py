"""The S3 object store against a real S3-compatible server (SeaweedFS on loopback)."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway import problems, routes_files
from lipsync_common.config import StorageSettings
from lipsync_common.s3_store import LIFECYCLE_RULE_ID, S3Store
from lipsync_common.signing import sign_path
from lipsync_common.storage import NotStored, open_store
from tests.s3_server import SeaweedS3, running_s3

MIB = 1024 * 1024
# The smallest part S3 accepts (but for the last one).
PART = 5 * MIB


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with running_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def bucket(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:
    name = s3.create_bucket()
    for key, value in s3.env(name, "lipsync").items():
        monkeypatch.setenv(key, value)
    return name


@pytest.fixture
def store(bucket: str) -> S3Store:
    return S3Store.connect(StorageSettings.from_env(), "lipsync/results/", part_bytes=PART)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_the_factory_opens_the_area_under_the_prefix(
    s3: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    results = open_store("results", tmp_path / "unused")
    uploads = open_store("uploads", tmp_path / "unused")
    results.put("job-1.mp4", write(tmp_path / "a.mp4", b"result"))
    uploads.put("acct/u1/audio.wav", write(tmp_path / "b.wav", b"upload"))
    assert s3.keys(bucket) == ["lipsync/results/job-1.mp4", "lipsync/uploads/acct/u1/audio.wav"]
    assert not uploads.exists("job-1.mp4")
    assert not (tmp_path / "unused").exists()


def test_a_large_file_goes_up_in_parts_without_being_read_whole(
    s3: SeaweedS3, bucket: str, store: S3Store, tmp_path: Path
) -> None:
    data = os.urandom(8 * PART + 123)
    source = write(tmp_path / "out.mp4", data)
    del data
    tracemalloc.start()
    try:
        store.put("job-big.mp4", source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # At most a few parts in flight (max_concurrency), never the whole 40 MiB.
    assert peak < 5 * PART, f"peak {peak / MIB:.1f} MiB"
    assert not source.exists()
    head = s3.client().head_object(Bucket=bucket, Key="lipsync/results/job-big.mp4")
    # A multipart object's ETag is the parts' hash and their count.
    assert head["ETag"].strip('"').endswith("-9")
    assert head["ContentLength"] == 8 * PART + 123
    assert head["ContentType"] == "video/mp4"


def test_a_small_file_round_trips_and_delete_removes_it_at_once(
    store: S3Store, tmp_path: Path
) -> None:
    store.put("job-1.mp4", write(tmp_path / "out.mp4", b"mp4 bytes"))
    assert store.exists("job-1.mp4")
    with store.open("job-1.mp4") as stream:
        assert stream.read() == b"mp4 bytes"
    assert store.local_path("job-1.mp4") is None
    assert store.delete("job-1.mp4") is True
    assert not store.exists("job-1.mp4")
    assert store.delete("job-1.mp4") is False
    with pytest.raises(NotStored):
        store.open("job-1.mp4")


def test_presigned_get_and_head_urls_work_until_the_delete(store: S3Store, tmp_path: Path) -> None:
    store.put("job-2.mp4", write(tmp_path / "out.mp4", bytes(range(256))))
    url = store.url("job-2.mp4", 60)
    assert url is not None
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == bytes(range(256))
    part = httpx.get(url, headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == bytes(range(4, 12))
    head_url = store.url("job-2.mp4", 60, "HEAD")
    assert head_url is not None
    assert httpx.head(head_url).headers["content-length"] == "256"
    # A URL signed for GET is not one for anything else: it is no credential to PUT.
    assert httpx.put(url, content=b"overwrite").status_code == 403
    store.delete("job-2.mp4")
    assert httpx.get(url).status_code == 404


def test_a_presigned_put_stores_an_upload_straight_into_the_bucket(store: S3Store) -> None:
    url = store.upload_url("acct/u1/audio.wav", 60)
    assert url is not None
    assert httpx.put(url, content=b"RIFF....WAVE").status_code == 200
    with store.open("acct/u1/audio.wav") as stream:
        assert stream.read() == b"RIFF....WAVE"


def test_a_key_that_leaves_the_prefix_is_refused(store: S3Store) -> None:
    for key in ("../uploads/x", ".hidden", "a//b", ""):
        with pytest.raises(ValueError):
            store.delete(key)


def lifecycle(s3: SeaweedS3, bucket: str) -> list[dict[str, Any]]:
    return list(s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])


def test_expiry_is_a_lifecycle_rule_on_the_prefix_that_keeps_other_rules(
    s3: SeaweedS3, bucket: str, store: S3Store
) -> None:
    theirs = {
        "ID": "operator-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    s3.client().put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [theirs]}
    )
    # Rounded up to whole days, so the object outlives its URL; set twice, kept once.
    assert store.expire_after(7 * 24 * 3600 + 1) is True
    assert store.expire_after(7 * 24 * 3600 + 1) is True
    rules = {rule["ID"]: rule for rule in lifecycle(s3, bucket)}
    assert set(rules) == {"operator-logs", f"{LIFECYCLE_RULE_ID}-lipsync-results"}
    ours = rules[f"{LIFECYCLE_RULE_ID}-lipsync-results"]
    assert ours["Filter"] == {"Prefix": "lipsync/results/"}
    assert ours["Expiration"] == {"Days": 8}
    assert rules["operator-logs"]["Expiration"] == {"Days": 30}


def test_expiry_on_a_missing_bucket_is_refused_not_raised(s3: SeaweedS3, bucket: str) -> None:
    settings = StorageSettings(bucket="no-such-bucket-here", endpoint_url=s3.endpoint_url)
    assert S3Store.connect(settings, "results/").expire_after(3600) is False


async def test_the_gateway_redirects_a_signed_url_to_a_short_presigned_one(
    store: S3Store, tmp_path: Path
) -> None:
    key = b"k" * 32
    app = FastAPI()
    problems.install(app)
    now = 1_000_000.0
    app.include_router(routes_files.router(store, key, clock=lambda: now))
    store.put("job-3.mp4", write(tmp_path / "out.mp4", b"the video"))
    path = sign_path(key, "job-3.mp4", int(now) + 3600)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path)
        assert response.status_code == 307
        assert response.headers["cache-control"] == "no-store"
        location = response.headers["location"]
        assert f"X-Amz-Expires={routes_files.REDIRECT_S}" in location
        head = await client.head(path)
        assert head.status_code == 307
        # A bad signature never reaches the bucket.
        forged = sign_path(b"other" * 8, "job-3.mp4", int(now) + 60)
        assert (await client.get(forged)).status_code == 404
    async with httpx.AsyncClient() as bucket_client:
        assert (await bucket_client.get(location)).content == b"the video"
        head_reply = await bucket_client.head(head.headers["location"])
        assert head_reply.status_code == 200
        assert head_reply.headers["content-length"] == str(len(b"the video"))
        store.delete("job-3.mp4")
        assert (await bucket_client.get(location)).status_code == 404


def test_presigned_urls_name_the_public_endpoint_when_one_is_set(
    s3: SeaweedS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The services reach the store at 127.0.0.1, clients at another name of it.
    public = s3.endpoint_url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("LIPSYNC_S3_PUBLIC_ENDPOINT_URL", public)
    store = S3Store.connect(StorageSettings.from_env(), "lipsync/results/")
    store.put("job-4.mp4", write(tmp_path / "out.mp4", b"public"))
    url = store.url("job-4.mp4", 60)
    assert url is not None and url.startswith(f"{public}/{bucket}/lipsync/results/job-4.mp4?")
    assert httpx.get(url).content == b"public"
