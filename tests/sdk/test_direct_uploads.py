"""The SDK sends files straight to the bucket where the server offers it (direct uploads).

On a stack whose uploads lie in SeaweedFS (tests/integration/test_s3_stack.py's
`stack_on_s3`), the SDK talks to the gateway through a relaying proxy
(tests/sdk/servers.py) whose request lines show what the gateway was sent:
the form asked for and the completion, never a multipart upload; the files
lie in the bucket under the upload's id, and jobs made from local paths
complete, blocking and async. A file that grows once its size was declared
gets SeaweedFS's own `EntityTooLarge`, as a `BucketError`. The session's
stack with local files answers 409, asked once per client, and the SDK
falls back to multipart (tests/sdk/test_uploads.py runs its uploads).

What a real bucket cannot be made to do on demand (a 503, then success) is
played by a scripted loopback server, standing for both the API and the bucket.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lipsync_client import (
    AsyncClient,
    BucketError,
    Client,
    ConflictError,
)

from tests.integration.harness import MediaHost
from tests.integration.test_s3_stack import stack_on_s3
from tests.media_fixtures import DATA_DIR
from tests.s3_server import SeaweedS3, running_s3
from tests.sdk.conftest import SdkStack
from tests.sdk.servers import Answer, DroppingProxy, ScriptedServer
from tests.sdk.test_uploads import NO_DIRECT, upload_answer

FACE = DATA_DIR / "astronaut.jpg"
MULTIPART = "POST /api/v1/uploads HTTP/1.1"
ASK = "POST /api/v1/uploads/direct HTTP/1.1"
ENTITY_TOO_LARGE = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>EntityTooLarge</Code>"
    b"<Message>Your proposed upload exceeds the maximum allowed object size.</Message>"
    b"<Resource>/bucket</Resource></Error>"
)


def form_answer(
    server: ScriptedServer, upload_id: str, size: int, complete_url: str = ""
) -> Answer:
    """POST /uploads/direct's answer, its form sending the file to the scripted server too."""
    return (
        201,
        {},
        {
            "id": upload_id,
            "upload": {
                "method": "POST",
                "url": f"{server.url}/bucket",
                "fields": {
                    "Content-Type": "application/octet-stream",
                    "key": f"lipsync/uploads/{upload_id}/incoming",
                    "policy": "eyJjb25kaXRpb25zIjpbXX0=",
                },
            },
            "bytes": size,
            "expiresAt": "2026-12-02T08:15:00Z",
            "completeUrl": complete_url or f"{server.url}/api/v1/uploads/{upload_id}/complete",
        },
    )


def paths(server: ScriptedServer) -> list[str]:
    return [f"{method} {path}" for method, path, _, _ in server.requests]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer([])
    yield server
    server.close()


def test_the_file_goes_to_the_bucket_with_the_form_and_a_5xx_is_retried(
    scripted: ScriptedServer,
) -> None:
    size = FACE.stat().st_size
    scripted.answers = [
        form_answer(scripted, "up_d", size),
        (503, {"content-type": "application/xml"}, b"<Error><Code>SlowDown</Code></Error>"),
        (204, {}, None),
        upload_answer("up_d", "image", size),
    ]
    progress: list[tuple[str, int, int | None]] = []
    with Client(api_key="sk_test", base_url=scripted.url) as client:
        upload = client.uploads.create(FACE, on_progress=lambda *p: progress.append(p))
    assert (upload.id, upload.bytes) == ("up_d", size)
    assert paths(scripted) == [
        "POST /api/v1/uploads/direct",
        "POST /bucket",
        "POST /bucket",
        "POST /api/v1/uploads/up_d/complete",
    ]
    asked, *to_bucket, completed = scripted.requests
    assert json.loads(asked[3]) == {"bytes": size}
    assert asked[2]["authorization"] == completed[2]["authorization"] == "Bearer sk_test"
    for _, _, headers, body in to_bucket:
        # The form is the permission: the API key never goes to the bucket.
        assert "authorization" not in headers
        assert headers["content-type"].startswith("multipart/form-data; boundary=")
        # S3 reads the fields first; the file is the last part.
        assert body.index(b'name="policy"') < body.index(b'name="file"; filename="astronaut.jpg"')
        assert body.endswith(FACE.read_bytes() + b"\r\n" + body.split(b"\r\n", 1)[0] + b"--\r\n")
    # The retry sent the whole file again, and the bar started over with it.
    sent = [p[1] for p in progress]
    assert any(later < earlier for earlier, later in itertools.pairwise(sent))
    assert progress[-1] == ("astronaut.jpg", size, size)


async def test_a_bucket_refusal_is_a_bucket_error_not_retried_and_the_upload_deleted(
    scripted: ScriptedServer,
) -> None:
    size = FACE.stat().st_size
    scripted.answers = [
        form_answer(scripted, "up_big", size),
        (400, {"content-type": "application/xml"}, ENTITY_TOO_LARGE),
        (204, {}, None),
    ]
    async with AsyncClient(api_key="sk_test", base_url=scripted.url) as client:
        with pytest.raises(BucketError) as refused:
            await client.uploads.create(FACE)
    assert (refused.value.status, refused.value.code) == (400, "EntityTooLarge")
    assert "the bucket refused the file: Your proposed upload exceeds" in str(refused.value)
    assert paths(scripted) == [
        "POST /api/v1/uploads/direct",
        "POST /bucket",
        "DELETE /api/v1/uploads/up_big",
    ]


def test_the_completion_goes_to_the_base_url_whatever_host_the_answer_names(
    scripted: ScriptedServer,
) -> None:
    size = FACE.stat().st_size
    elsewhere = "http://gateway.internal:1/api/v1/uploads/up_p/complete"
    scripted.answers = [
        form_answer(scripted, "up_p", size, complete_url=elsewhere),
        (204, {}, None),
        upload_answer("up_p", "image", size),
    ]
    with Client(api_key="sk_test", base_url=scripted.url) as client:
        assert client.uploads.create(FACE).id == "up_p"
    assert paths(scripted)[-1] == "POST /api/v1/uploads/up_p/complete"


class OneWayStream(io.BytesIO):
    """A stream that says it cannot be read again from its start (as a socket's)."""

    def seekable(self) -> bool:
        return False


def test_direct_false_and_a_stream_that_cannot_be_resent_go_multipart_without_asking(
    scripted: ScriptedServer,
) -> None:
    scripted.answers = [upload_answer("up_1", "image", 1), upload_answer("up_2", "image", 1)]
    stream = OneWayStream(FACE.read_bytes())
    with Client(api_key="sk_test", base_url=scripted.url) as client:
        client.uploads.create(FACE, direct=False)
        client.uploads.create(stream, filename="face.jpg")
        with pytest.raises(ValueError, match="known size"):
            client.uploads.create(stream, direct=True)
    assert paths(scripted) == ["POST /api/v1/uploads", "POST /api/v1/uploads"]
    assert FACE.read_bytes() in scripted.requests[1][3]


def test_an_older_server_is_asked_once_and_direct_true_insists(scripted: ScriptedServer) -> None:
    method_not_allowed = (405, {}, {"status": 405, "code": "method_not_allowed"})
    scripted.answers = [
        method_not_allowed,
        upload_answer("up_1", "image", 1),
        upload_answer("up_2", "image", 1),
        NO_DIRECT,
    ]
    with Client(api_key="sk_test", base_url=scripted.url) as client:
        client.uploads.create(FACE)
        client.uploads.create(FACE)
        with pytest.raises(ConflictError) as refused:
            client.uploads.create(FACE, direct=True)
    assert refused.value.code == "direct_uploads_unavailable"
    assert paths(scripted) == [
        "POST /api/v1/uploads/direct",
        "POST /api/v1/uploads",
        "POST /api/v1/uploads",
        "POST /api/v1/uploads/direct",
    ]


@dataclass
class BucketStack:
    sdk: SdkStack
    s3: SeaweedS3
    bucket: str

    def keys_of(self, upload_id: str) -> list[str]:
        return [key for key in self.s3.keys(self.bucket) if upload_id in key]


@pytest.fixture(scope="module")
def bucket_stack(
    tmp_path_factory: pytest.TempPathFactory, sdk_media: Path
) -> Iterator[BucketStack]:
    root = tmp_path_factory.mktemp("sdk-s3")
    media = MediaHost(sdk_media)
    with contextlib.closing(media), running_s3(root / "seaweedfs") as s3:
        bucket = s3.create_bucket()
        with stack_on_s3(root, s3, bucket) as stack:
            yield BucketStack(SdkStack(stack, media, sdk_media, stack.env), s3, bucket)


@pytest.fixture
def proxy(bucket_stack: BucketStack) -> Iterator[DroppingProxy]:
    relay = DroppingProxy(bucket_stack.sdk.base_url, drops=0)
    yield relay
    relay.close()


@pytest.mark.integration
def test_files_go_to_the_bucket_and_a_job_from_local_paths_completes(
    bucket_stack: BucketStack, proxy: DroppingProxy, tmp_path: Path
) -> None:
    account = bucket_stack.sdk.account(credits=100)
    voice = bucket_stack.sdk.media_dir / "speech-3s.wav"
    size = FACE.stat().st_size
    progress: list[tuple[str, int, int | None]] = []
    with Client(api_key=account.key, base_url=proxy.url) as client:
        upload = client.uploads.create(FACE, on_progress=lambda *p: progress.append(p))
        assert (upload.kind, upload.content_type, upload.bytes) == ("image", "image/jpeg", size)
        assert progress[-1] == ("astronaut.jpg", size, size)
        # Checked and copied into place by the completion; the form's object is gone.
        assert bucket_stack.keys_of(upload.id) == [
            f"lipsync/uploads/{upload.id}/file",
            f"lipsync/uploads/{upload.id}/meta.json",
        ]
        assert proxy.request_lines == [ASK, f"POST /api/v1/uploads/{upload.id}/complete HTTP/1.1"]
        assert client.uploads.get(upload.id).url == upload.url

        with voice.open("rb") as audio:
            job = client.lipsync_image(FACE, audio, resolution="480p").wait(timeout=120)
        assert job.status == "completed", job.error
        assert job.download(tmp_path / "out.mp4").stat().st_size > 0
        client.uploads.delete(upload.id)
        assert bucket_stack.keys_of(upload.id) == []
    assert proxy.request_lines.count(ASK) == 3
    assert MULTIPART not in proxy.request_lines


@pytest.mark.integration
def test_a_start_whose_answer_is_lost_is_retried_into_the_same_upload(
    bucket_stack: BucketStack,
) -> None:
    # The gateway makes the pending upload, then the answer is lost on the way back.
    lossy = DroppingProxy(
        bucket_stack.sdk.base_url,
        drops=1,
        should_drop=lambda request: request.startswith(ASK.split(" HTTP")[0].encode()),
    )
    account = bucket_stack.sdk.account(credits=0)
    before = set(bucket_stack.s3.keys(bucket_stack.bucket))
    try:
        with Client(api_key=account.key, base_url=lossy.url) as client:
            upload = client.uploads.create(FACE)
    finally:
        lossy.close()
    assert len(lossy.dropped) == 1 and lossy.request_lines.count(ASK) == 2
    # One upload, not two: the retry named the first one, and nothing else was left behind.
    made = set(bucket_stack.s3.keys(bucket_stack.bucket)) - before
    assert made == {f"lipsync/uploads/{upload.id}/file", f"lipsync/uploads/{upload.id}/meta.json"}


@pytest.mark.integration
async def test_async_client_sends_to_the_bucket_and_the_job_completes(
    bucket_stack: BucketStack, proxy: DroppingProxy
) -> None:
    account = bucket_stack.sdk.account(credits=100)
    voice = bucket_stack.sdk.media_dir / "speech-3s.wav"
    sizes: dict[str, int] = {}

    def seen(name: str, sent: int, total: int | None) -> None:
        sizes[name] = sent

    async with AsyncClient(api_key=account.key, base_url=proxy.url) as client:
        job = await client.lipsync_image(FACE, voice, on_upload=seen)
        await job.wait(timeout=120)
    assert job.status == "completed", job.error
    assert sizes == {"astronaut.jpg": FACE.stat().st_size, "speech-3s.wav": voice.stat().st_size}
    assert proxy.request_lines.count(ASK) == 2
    assert MULTIPART not in proxy.request_lines


@pytest.mark.integration
def test_a_file_grown_since_its_size_was_declared_is_refused_by_the_bucket(
    bucket_stack: BucketStack, tmp_path: Path
) -> None:
    account = bucket_stack.sdk.account(credits=0)
    growing = tmp_path / "recording.jpg"
    growing.write_bytes(FACE.read_bytes())

    def grow(request: bytes) -> None:
        # As a file still being written: longer once the gateway has the declared size.
        if request.startswith(ASK.encode()):
            with growing.open("ab") as more:
                more.write(b"\0" * 100)

    relay = DroppingProxy(bucket_stack.sdk.base_url, drops=0, on_answered=grow)
    try:
        with Client(api_key=account.key, base_url=relay.url) as client:
            with pytest.raises(BucketError) as refused:
                client.uploads.create(growing)
    finally:
        relay.close()
    assert (refused.value.status, refused.value.code) == (400, "EntityTooLarge")
    # Not retried; the pending upload was deleted at once, nothing left in the bucket.
    assert len(relay.request_lines) == 2
    deleted = relay.request_lines[1].split()[1].rsplit("/", 1)[1]
    assert relay.request_lines[1] == f"DELETE /api/v1/uploads/{deleted} HTTP/1.1"
    assert bucket_stack.keys_of(deleted) == []


@pytest.mark.integration
def test_local_files_stack_is_asked_once_then_sent_multipart(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=0)
    relay = DroppingProxy(sdk_stack.base_url, drops=0)
    try:
        with Client(api_key=account.key, base_url=relay.url) as client:
            first = client.uploads.create(FACE)
            second = client.uploads.create(sdk_stack.media_dir / "speech-3s.wav")
            with pytest.raises(ConflictError) as refused:
                client.uploads.create(FACE, direct=True)
    finally:
        relay.close()
    assert (first.kind, second.kind) == ("image", "audio")
    assert refused.value.code == "direct_uploads_unavailable"
    assert relay.request_lines == [ASK, MULTIPART, MULTIPART, ASK]
