"""The local object store, the key rules, and choosing a store from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lipsync_common.config import ConfigError, StorageSettings
from lipsync_common.local_store import LocalStore
from lipsync_common.results import result_key, result_store
from lipsync_common.storage import NotStored, check_key, open_store


def put_file(store: LocalStore, tmp_path: Path, key: str, data: bytes = b"mp4") -> Path:
    source = tmp_path / "out.mp4"
    source.write_bytes(data)
    store.put(key, source)
    return source


def test_a_result_is_moved_into_the_store_under_its_key(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "results")
    source = put_file(store, tmp_path, result_key("job-1"))
    assert (tmp_path / "results" / "job-1.mp4").read_bytes() == b"mp4"
    assert not source.exists()
    # No partial file is left beside it.
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["job-1.mp4"]
    assert store.exists("job-1.mp4")
    with store.open("job-1.mp4") as stream:
        assert stream.read() == b"mp4"
    assert store.local_path("job-1.mp4") == (tmp_path / "results" / "job-1.mp4").resolve()


def test_keys_with_folders_make_folders(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    put_file(store, tmp_path, "acct-1/upload-7/audio.wav", b"wav")
    assert (tmp_path / "objects" / "acct-1" / "upload-7" / "audio.wav").read_bytes() == b"wav"
    assert store.delete("acct-1/upload-7/audio.wav") is True


def test_delete_removes_the_object_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "results")
    put_file(store, tmp_path, "job-1.mp4")
    assert store.delete("job-1.mp4") is True
    assert store.delete("job-1.mp4") is False
    assert list((tmp_path / "results").iterdir()) == []
    assert not store.exists("job-1.mp4")
    assert store.local_path("job-1.mp4") is None
    with pytest.raises(NotStored):
        store.open("job-1.mp4")


@pytest.mark.parametrize(
    "key",
    ["../secret", "a/../secret", ".hidden", "a/.partial", "", "a//b", "/abs", "a/", "x" * 256],
)
def test_a_key_that_could_leave_the_store_is_refused(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "results")
    (tmp_path / "secret").write_bytes(b"x")
    with pytest.raises(ValueError):
        store.delete(key)
    with pytest.raises(ValueError):
        check_key(key)
    assert (tmp_path / "secret").exists()


def test_a_link_out_of_the_folder_is_not_served(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "results")
    (tmp_path / "outside.mp4").write_bytes(b"secret")
    (tmp_path / "results" / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    assert store.local_path("link.mp4") is None


def test_a_folder_has_no_urls_and_no_expiry(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "results")
    put_file(store, tmp_path, "job-1.mp4")
    assert store.url("job-1.mp4", 60) is None
    assert store.upload_url("job-1.mp4", 60) is None
    assert store.expire_after(3600) is False


def test_without_a_storage_url_results_stay_in_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIPSYNC_STORAGE_URL", raising=False)
    store = result_store(tmp_path / "results")
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "results"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://media", "media", ""),
        ("s3://media/", "media", ""),
        ("s3://media/lipsync", "media", "lipsync/"),
        ("s3://media/a/b/", "media", "a/b/"),
    ],
)
def test_storage_url_names_the_bucket_and_prefix(
    monkeypatch: pytest.MonkeyPatch, url: str, bucket: str, prefix: str
) -> None:
    monkeypatch.setenv("LIPSYNC_STORAGE_URL", url)
    monkeypatch.setenv("LIPSYNC_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = StorageSettings.from_env()
    assert (settings.bucket, settings.prefix) == (bucket, prefix)
    assert settings.endpoint_url == "http://127.0.0.1:1"
    assert settings.region == "eu-west-1"


@pytest.mark.parametrize("url", ["file:///tmp/x", "s3://", "media", "gs://media/x"])
def test_a_storage_url_that_is_not_s3_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("LIPSYNC_STORAGE_URL", url)
    with pytest.raises(ConfigError):
        StorageSettings.from_env()


def test_an_s3_url_opens_a_bucket_store_of_the_area(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing is sent: building the client and presigning are local work; the keys
    # in the environment keep boto3 from asking anywhere else for credentials.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    settings = StorageSettings(bucket="media", prefix="p/", endpoint_url="http://127.0.0.1:1")
    store = open_store("results", tmp_path / "unused", settings)
    url = store.url("job-1.mp4", 60)
    assert url is not None and url.startswith("http://127.0.0.1:1/media/p/results/job-1.mp4?")
    assert "X-Amz-Expires=60" in url
    assert not (tmp_path / "unused").exists()


def test_local_storage_never_imports_boto3(tmp_path: Path) -> None:
    """`make run` starts as fast as before: the S3 client is imported only for a bucket."""
    code = (
        "import sys, pathlib\n"
        "from lipsync_common.results import result_store\n"
        "import gateway.routes_files, job_service.retention, inference_service.pipeline\n"
        f"result_store(pathlib.Path({str(tmp_path / 'r')!r}))\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LIPSYNC_STORAGE_URL"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
