"""POST/GET/DELETE /api/v1/uploads: sniffing, size caps while streaming, owners, expiry.

The gateway runs over the fake backends of conftest.py with a real uploads
folder; media are real files made here (PyAV, OpenCV), so the signatures
sniffed are those of real encoders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from lipsync_common.uploads import sweep_folder
from tests.gateway.conftest import (
    AUTH_HEADERS,
    OTHER_KEY,
    SESSION_HEADERS,
    FakeClock,
    FakeStack,
    assert_problem,
)
from tests.media_fixtures import portrait_path, write_speech_wav

OTHER_HEADERS = {"Authorization": f"Bearer {OTHER_KEY}"}
TTL_S = 3600.0
LIMITS = {"image": 2 * 1024 * 1024, "audio": 1024 * 1024, "video": 3 * 1024 * 1024}


def _encode(path: Path, fmt: str, codec: str, audio: bool) -> Path:
    container = av.open(str(path), "w", format=fmt)
    packets: list[av.Packet] = []
    if audio:
        rate = 48000 if codec == "libopus" else 16000
        sound = container.add_stream(codec, rate=rate)
        assert isinstance(sound, av.AudioStream)
        planar = codec in ("aac", "libmp3lame")
        for _ in range(8):
            samples = np.zeros((1, 960), dtype=np.float32 if planar else np.int16)
            frame = av.AudioFrame.from_ndarray(
                samples, format="fltp" if planar else "s16", layout="mono"
            )
            frame.sample_rate = rate
            packets += sound.encode(frame)
        packets += sound.encode(None)
    else:
        picture = container.add_stream(codec, rate=25)
        assert isinstance(picture, av.VideoStream)
        picture.width = picture.height = 64
        picture.pix_fmt = "yuv420p"
        for _ in range(3):
            image = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            packets += picture.encode(image)
        packets += picture.encode(None)
    for packet in packets:
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small real file of each accepted format, named by format."""
    folder = tmp_path_factory.mktemp("media")
    portrait = cv2.imread(str(portrait_path()))
    assert portrait is not None
    files = {"jpeg": portrait_path()}
    for ext in ("png", "webp"):
        cv2.imwrite(str(folder / f"face.{ext}"), portrait)
        files[ext] = folder / f"face.{ext}"
    files["wav"] = write_speech_wav(folder / "voice.wav", 1.0)
    for name, fmt, codec, audio in [
        ("mp3", "mp3", "libmp3lame", True),
        ("m4a", "ipod", "aac", True),
        ("aac", "adts", "aac", True),
        ("flac", "flac", "flac", True),
        ("ogg", "ogg", "libopus", True),
        ("mp4", "mp4", "libx264", False),
        ("mov", "mov", "libx264", False),
        ("webm", "webm", "libvpx", False),
        ("mkv", "matroska", "libx264", False),
    ]:
        files[name] = _encode(folder / f"media.{name}", fmt, codec, audio)
    return files


@pytest.fixture
def upload_settings(settings: GatewaySettings, tmp_path: Path) -> GatewaySettings:
    return dataclasses.replace(
        settings, uploads_dir=tmp_path / "uploads", upload_ttl_s=TTL_S, upload_limits=LIMITS
    )


@pytest.fixture
async def client(
    stack: FakeStack, upload_settings: GatewaySettings, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(upload_settings, stack.backends, monotonic=clock, wall_clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    name: str = "file.bin",
    headers: dict[str, str] = AUTH_HEADERS,
    declared: str = "application/octet-stream",
) -> httpx.Response:
    return await client.post(
        "/api/v1/uploads", files={"file": (name, content, declared)}, headers=headers
    )


def leftovers(settings: GatewaySettings) -> list[Path]:
    return [p for p in settings.uploads_folder().rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("name", "kind", "content_type"),
    [
        ("jpeg", "image", "image/jpeg"),
        ("png", "image", "image/png"),
        ("webp", "image", "image/webp"),
        ("wav", "audio", "audio/wav"),
        ("mp3", "audio", "audio/mpeg"),
        ("m4a", "audio", "audio/mp4"),
        ("aac", "audio", "audio/aac"),
        ("flac", "audio", "audio/flac"),
        ("ogg", "audio", "audio/ogg"),
        ("mp4", "video", "video/mp4"),
        ("mov", "video", "video/quicktime"),
        ("webm", "video", "video/webm"),
        ("mkv", "video", "video/x-matroska"),
    ],
)
async def test_kind_comes_from_the_content(
    client: httpx.AsyncClient, media: dict[str, Path], name: str, kind: str, content_type: str
) -> None:
    content = media[name].read_bytes()
    # A misleading name and declared type change nothing.
    response = await upload(client, content, name="notes.txt", declared="text/plain")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["kind"], body["contentType"], body["bytes"]) == (kind, content_type, len(content))


async def test_upload_read_download_delete(
    client: httpx.AsyncClient, upload_settings: GatewaySettings, clock: FakeClock
) -> None:
    content = portrait_path().read_bytes()
    response = await upload(client, content, "face.jpg")
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "url", "kind", "bytes", "contentType", "expiresAt"}
    assert created["id"].startswith("up_")
    assert created["url"] == f"http://testserver/api/v1/uploads/{created['id']}/content"
    assert response.headers["location"] == f"/api/v1/uploads/{created['id']}"
    assert created["expiresAt"].endswith("Z")

    read = await client.get(f"/api/v1/uploads/{created['id']}", headers=AUTH_HEADERS)
    assert read.status_code == 200 and read.json() == created
    # A session token (the console) is the same account.
    assert (await client.get(created["url"], headers=SESSION_HEADERS)).content == content
    download = await client.get(created["url"], headers=AUTH_HEADERS)
    assert download.headers["content-type"] == "image/jpeg"

    # Another account, or no credential, learns nothing.
    assert_problem(
        await client.get(f"/api/v1/uploads/{created['id']}", headers=OTHER_HEADERS),
        404,
        "not_found",
    )
    assert_problem(await client.get(created["url"], headers=OTHER_HEADERS), 404, "not_found")
    assert_problem(
        await client.delete(f"/api/v1/uploads/{created['id']}", headers=OTHER_HEADERS),
        404,
        "not_found",
    )
    assert (await client.get(created["url"])).status_code == 401

    deleted = await client.delete(f"/api/v1/uploads/{created['id']}", headers=AUTH_HEADERS)
    assert deleted.status_code == 204
    assert leftovers(upload_settings) == []
    assert_problem(
        await client.get(f"/api/v1/uploads/{created['id']}", headers=AUTH_HEADERS), 404, "not_found"
    )
    assert_problem(await client.get(created["url"], headers=AUTH_HEADERS), 404, "not_found")


async def test_an_upload_expires_and_the_sweep_deletes_it(
    client: httpx.AsyncClient, upload_settings: GatewaySettings, clock: FakeClock
) -> None:
    created = (await upload(client, portrait_path().read_bytes())).json()
    clock.advance(TTL_S - 1)
    assert (await client.get(created["url"], headers=AUTH_HEADERS)).status_code == 200
    assert sweep_folder(upload_settings.uploads_folder(), now=clock.now) == 0
    clock.advance(1)
    assert_problem(await client.get(created["url"], headers=AUTH_HEADERS), 404, "not_found")
    assert_problem(
        await client.get(f"/api/v1/uploads/{created['id']}", headers=AUTH_HEADERS), 404, "not_found"
    )
    assert leftovers(upload_settings) != []
    assert sweep_folder(upload_settings.uploads_folder(), now=clock.now) == 1
    assert leftovers(upload_settings) == []


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is text\n" * 100, b"%PDF-1.7\n" + b"0" * 2000, b"GIF89a" + b"\0" * 500],
    ids=["empty", "text", "pdf", "gif"],
)
async def test_other_content_is_415(
    client: httpx.AsyncClient, upload_settings: GatewaySettings, content: bytes
) -> None:
    # Named and declared as a portrait: only the content counts.
    response = await upload(client, content, "face.png", declared="image/png")
    assert_problem(response, 415, "unsupported_media_type")
    assert leftovers(upload_settings) == []


async def test_bodies_that_are_not_one_file_part(client: httpx.AsyncClient) -> None:
    jpeg = portrait_path().read_bytes()
    not_multipart = await client.post(
        "/api/v1/uploads", content=jpeg, headers={**AUTH_HEADERS, "Content-Type": "image/jpeg"}
    )
    assert_problem(not_multipart, 415, "unsupported_media_type")
    wrong_name = await client.post(
        "/api/v1/uploads", files={"image": ("f.jpg", jpeg[:1000])}, headers=AUTH_HEADERS
    )
    body = assert_problem(wrong_name, 422, "invalid_parameter")
    assert body["errors"] == [{"field": "file", "message": "file is required"}]
    twice = await client.post(
        "/api/v1/uploads",
        files=[("file", ("a.jpg", jpeg)), ("file", ("b.jpg", jpeg))],
        headers=AUTH_HEADERS,
    )
    assert_problem(twice, 422, "invalid_parameter")
    truncated = await client.post(
        "/api/v1/uploads",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + jpeg[:9000],
        headers={**AUTH_HEADERS, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert_problem(truncated, 400, "bad_request")
    # Cut off before the kind is known: still an incomplete body, not a missing file.
    short = await client.post(
        "/api/v1/uploads",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + jpeg[:100],
        headers={**AUTH_HEADERS, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert_problem(short, 400, "bad_request")
    assert (await upload(client, jpeg, headers={})).status_code == 401


async def test_each_kind_has_its_own_cap(
    client: httpx.AsyncClient, upload_settings: GatewaySettings, media: dict[str, Path]
) -> None:
    # A WAV over the audio cap but under the image cap: the kind's cap applies.
    wav = media["wav"].read_bytes()
    padded = wav + b"\0" * (LIMITS["audio"] + 1 - len(wav))
    body = assert_problem(await upload(client, padded), 413, "file_too_large")
    assert body["detail"] == "an uploaded audio file must be at most 1 MB"
    exactly = wav + b"\0" * (LIMITS["audio"] - len(wav))
    assert (await upload(client, exactly)).json()["bytes"] == LIMITS["audio"]
    jpeg = portrait_path().read_bytes()
    big_image = jpeg + b"\0" * (LIMITS["image"] + 1 - len(jpeg))
    assert_problem(await upload(client, big_image), 413, "file_too_large")
    # Nothing of the refused ones is left behind; the accepted one is stored.
    assert len(leftovers(upload_settings)) == 2


class CountingBody(httpx.AsyncByteStream):
    """A multipart body of a WAV `total` bytes long, counting what is read of it."""

    CHUNK = 64 * 1024

    def __init__(self, head: bytes, total: int) -> None:
        self.prefix = (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="v.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n" + head
        )
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.prefix
        self.sent += len(self.prefix)
        while self.sent < self.total:
            self.sent += self.CHUNK
            yield b"\0" * self.CHUNK
        yield b"\r\n--b0undary--\r\n"


async def test_a_body_far_over_the_cap_is_refused_as_it_arrives(
    client: httpx.AsyncClient, upload_settings: GatewaySettings, media: dict[str, Path]
) -> None:
    # 2 GB declared nowhere (chunked): refused once the audio cap is crossed, not at the end.
    body = CountingBody(media["wav"].read_bytes()[:4096], total=2 * 1024**3)
    request = client.build_request(
        "POST",
        "/api/v1/uploads",
        headers={**AUTH_HEADERS, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    request.stream = body
    response = await client.send(request)
    assert_problem(response, 413, "file_too_large")
    assert body.sent < LIMITS["audio"] + 4 * CountingBody.CHUNK
    assert leftovers(upload_settings) == []


async def test_a_declared_length_past_every_cap_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    body = CountingBody(b"RIFF", total=10 * 1024**3)
    request = client.build_request(
        "POST",
        "/api/v1/uploads",
        headers={
            **AUTH_HEADERS,
            "Content-Type": "multipart/form-data; boundary=b0undary",
            "Content-Length": str(10 * 1024**3),
        },
    )
    request.stream = body
    assert_problem(await client.send(request), 413, "file_too_large")
    assert body.sent <= len(body.prefix)


def image_job(image: str, audio: str) -> dict[str, object]:
    return {"formState": {"image": image, "audio": audio}}


async def test_jobs_take_their_own_accounts_upload_urls_only(
    client: httpx.AsyncClient, stack: FakeStack, media: dict[str, Path]
) -> None:
    face = (await upload(client, portrait_path().read_bytes())).json()
    voice = (await upload(client, media["wav"].read_bytes())).json()
    theirs = (await upload(client, media["wav"].read_bytes(), headers=OTHER_HEADERS)).json()

    # http://testserver is not https and may be private: an upload URL is still fine.
    own = await client.post(
        "/api/v1/lipsync-image", json=image_job(face["url"], voice["url"]), headers=AUTH_HEADERS
    )
    assert own.status_code == 202, own.text

    other = await client.post(
        "/api/v1/lipsync-image", json=image_job(face["url"], theirs["url"]), headers=AUTH_HEADERS
    )
    body = assert_problem(other, 422, "invalid_parameter")
    assert body["errors"] == [
        {"field": "formState.audio", "message": "formState.audio is not an upload of this account"}
    ]
    forged = face["url"].replace(face["id"], "up_" + "0" * 40)
    bad = await client.post(
        "/api/v1/lipsync-image", json=image_job(forged, voice["url"]), headers=AUTH_HEADERS
    )
    forged_errors = assert_problem(bad, 422, "invalid_parameter")["errors"]
    assert isinstance(forged_errors, list)
    assert forged_errors[0]["field"] == "formState.image"
    # The owner of `theirs` may use it, but not the other account's portrait.
    mine_for_them = await client.post(
        "/api/v1/lipsync-image", json=image_job(face["url"], theirs["url"]), headers=OTHER_HEADERS
    )
    errors = assert_problem(mine_for_them, 422, "invalid_parameter")["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["formState.image"]


async def test_estimates_take_their_own_accounts_upload_urls_only(
    client: httpx.AsyncClient, media: dict[str, Path]
) -> None:
    face = (await upload(client, portrait_path().read_bytes())).json()
    voice = (await upload(client, media["wav"].read_bytes())).json()
    body = {"model": "lipsync-image", **image_job(face["url"], voice["url"])}
    own = await client.post("/api/v1/estimate", json=body, headers=AUTH_HEADERS)
    assert own.status_code == 200, own.text
    theirs = await client.post("/api/v1/estimate", json=body, headers=OTHER_HEADERS)
    errors = assert_problem(theirs, 422, "invalid_parameter")["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["formState.image", "formState.audio"]


async def test_a_job_naming_a_deleted_or_expired_upload_is_refused_naming_the_field(
    client: httpx.AsyncClient, stack: FakeStack, media: dict[str, Path], clock: FakeClock
) -> None:
    face = (await upload(client, portrait_path().read_bytes())).json()
    voice = (await upload(client, media["wav"].read_bytes())).json()
    deleted = (await upload(client, media["wav"].read_bytes())).json()
    await client.delete(f"/api/v1/uploads/{deleted['id']}", headers=AUTH_HEADERS)
    created = len(stack.jobs.created)

    refused = await client.post(
        "/api/v1/lipsync-image", json=image_job(face["url"], deleted["url"]), headers=AUTH_HEADERS
    )
    errors = assert_problem(refused, 422, "invalid_parameter")["errors"]
    assert errors == [
        {
            "field": "formState.audio",
            "message": "formState.audio is an upload that has expired, was deleted or was never"
            " completed; upload the file again",
        }
    ]
    estimate = await client.post(
        "/api/v1/estimate",
        json={"model": "lipsync-image", **image_job(face["url"], deleted["url"])},
        headers=AUTH_HEADERS,
    )
    errors = assert_problem(estimate, 422, "invalid_parameter")["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["formState.audio"]

    # Both expire: both fields are named, in the body's order, and no job was made.
    clock.advance(TTL_S)
    expired = await client.post(
        "/api/v1/lipsync-image", json=image_job(face["url"], voice["url"]), headers=AUTH_HEADERS
    )
    errors = assert_problem(expired, 422, "invalid_parameter")["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["formState.image", "formState.audio"]
    assert len(stack.jobs.created) == created


def test_the_sweep_also_removes_what_a_stopped_gateway_left(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    (root / ".incoming").mkdir(parents=True)
    partial = root / ".incoming" / ".upload-abc"
    partial.write_bytes(b"half a body")
    orphan = root / "up_orphan"
    orphan.mkdir()
    (orphan / "file").write_bytes(b"no metadata")
    now = partial.stat().st_mtime
    assert sweep_folder(root, now=now + 60) == 0
    assert partial.exists() and orphan.exists()
    assert sweep_folder(root, now=now + 24 * 3600 + 1) == 1
    assert not partial.exists() and not orphan.exists()
