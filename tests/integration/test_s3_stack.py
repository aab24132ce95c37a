"""The whole stack with results in an S3 bucket and no folder shared between processes.

Every process gets its own data directory (as every pod has its own disk), so
the worker's output can reach the client only through the bucket: the job's
URL goes to the gateway, which redirects to a presigned URL of the object.
A DELETE of the job removes the object at once.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inference_service.media.probe import probe_output
from lipsync_common.devstack import SERVICES, Stack
from lipsync_common.s3_store import LIFECYCLE_RULE_ID
from tests.integration.conftest import Platform
from tests.integration.harness import MediaHost, bearer, free_port, stack_env, wait_until_finished
from tests.s3_server import SeaweedS3, running_s3

pytestmark = pytest.mark.integration

PROCESSES = (*SERVICES, "gateway")


@contextlib.contextmanager
def stack_on_s3(root: Path, s3: SeaweedS3, bucket: str) -> Iterator[Stack]:
    shared = root / "stack"
    env = stack_env(shared)
    env.update(s3.env(bucket, "lipsync"))
    # Each process would otherwise make its own signing key in its own folder.
    env["LIPSYNC_URL_SIGNING_KEY"] = secrets.token_urlsafe(32)
    process_env = {
        name: {
            "LIPSYNC_DATA_DIR": str(root / name),
            "LIPSYNC_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        }
        for name in PROCESSES
    }
    stack = Stack(env, log_dir=shared / "logs", start_timeout_s=120, process_env=process_env)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def files_under(folder: Path, pattern: str) -> list[Path]:
    return [path for path in folder.rglob(pattern) if path.is_file()]


def test_a_job_stored_in_s3_is_downloaded_then_deleted_from_the_bucket(
    tmp_path_factory: pytest.TempPathFactory, media_dir: Path
) -> None:
    root = tmp_path_factory.mktemp("s3-stack")
    timings: dict[str, float] = {}
    started = time.monotonic()
    media = MediaHost(media_dir)
    with contextlib.closing(media), running_s3(root / "seaweedfs") as s3:
        bucket = s3.create_bucket()
        timings["s3_start"] = time.monotonic() - started
        with stack_on_s3(root, s3, bucket) as stack:
            timings["stack_start"] = time.monotonic() - started - timings["s3_start"]
            with httpx.Client(base_url=stack.http_url, timeout=30) as client:
                platform = Platform(stack, stack.env, media, client)
                _, key = platform.account(credits=50)
                mark = time.monotonic()
                response = client.post(
                    "/api/v1/lipsync-image",
                    json={
                        "formState": {
                            "image": f"{media.url}/portrait.jpg",
                            "audio": f"{media.url}/speech-3s.wav",
                        }
                    },
                    headers=bearer(key),
                )
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]
                job = wait_until_finished(client, job_id, key, timeout_s=120)
                assert job["status"] == "completed", job["error"]
                timings["job"] = time.monotonic() - mark

                # The object is in the bucket, and in no process's folder.
                object_name = f"lipsync/results/{job_id}.mp4"
                assert object_name in s3.keys(bucket)
                for name in PROCESSES:
                    assert files_under(root / name, "*.mp4") == [], name
                assert files_under(root / "stack", "*.mp4") == []

                # job_service set the bucket's expiry at start-up (7 days by default).
                rules = s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
                ours = [r for r in rules if r["ID"] == f"{LIFECYCLE_RULE_ID}-lipsync-results"]
                assert [r["Expiration"] for r in ours] == [{"Days": 7}]

                # The job's URL is the gateway's; it redirects to a presigned one.
                mark = time.monotonic()
                redirect = httpx.get(job["output"], timeout=30)
                assert redirect.status_code == 307
                presigned = redirect.headers["location"]
                assert presigned.startswith(f"{s3.endpoint_url}/{bucket}/{object_name}?")
                video = httpx.get(job["output"], timeout=30, follow_redirects=True)
                assert video.status_code == 200
                assert video.headers["content-type"] == "video/mp4"
                out = root / "out.mp4"
                out.write_bytes(video.content)
                info = probe_output(out)
                assert (info.video_codec, info.audio_codec) == ("h264", "aac")
                assert abs(info.duration_s - 3.2) < 0.1
                timings["download"] = time.monotonic() - mark

                mark = time.monotonic()
                deleted = client.delete(f"/api/v1/jobs/{job_id}", headers=bearer(key))
                assert deleted.status_code == 204, deleted.text
                timings["delete"] = time.monotonic() - mark
                assert object_name not in s3.keys(bucket)
                gone = httpx.get(job["output"], timeout=30, follow_redirects=True)
                assert gone.status_code == 404
                assert httpx.get(presigned, timeout=30).status_code == 404
                after = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key)).json()
                assert after["output"] is None and after["deletedAt"]
    timings["total"] = time.monotonic() - started
    print("s3 stack timings (s):", {k: round(v, 2) for k, v in timings.items()})
