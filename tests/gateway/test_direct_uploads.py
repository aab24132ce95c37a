"""POST /api/v1/uploads/direct and /{id}/complete: files sent straight to the bucket.

The gateway runs over the fake backends of conftest.py with its uploads in a
real SeaweedFS bucket (tests/s3_server.py), and the files go to the bucket with
httpx and the form the gateway answered, as a client sends them. With the
uploads in a folder, the route answers its documented 409.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from lipsync_common.config import StorageSettings
from lipsync_common.s3_store import S3Store
from lipsync_common.storage import open_store
from tests.gateway.conftest import (
    AUTH_HEADERS,
    OTHER_KEY,
    SESSION_HEADERS,
    FakeClock,
    FakeStack,
    assert_problem,
)
from tests.media_fixtures import portrait_path, write_speech_wav
from tests.s3_server import SeaweedS3, running_s3

OTHER_HEADERS = {"Authorization": f"Bearer {OTHER_KEY}"}
TTL_S = 3600.0
LIMITS = {"image": 2 * 1024 * 1024, "audio": 1024 * 1024, "video": 3 * 1024 * 1024}
DIRECT = "/api/v1/uploads/direct"


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
def upload_settings(settings: GatewaySettings, tmp_path: Path) -> GatewaySettings:
    return dataclasses.replace(
        settings, uploads_dir=tmp_path / "uploads", upload_ttl_s=TTL_S, upload_limits=LIMITS
    )


@pytest.fixture
async def client(
    stack: FakeStack, upload_settings: GatewaySettings, clock: FakeClock, bucket: str
) -> AsyncIterator[httpx.AsyncClient]:
    store = S3Store.connect(StorageSettings.from_env(), "lipsync/uploads/")
    app = create_app(
        upload_settings, stack.backends, uploads=store, monotonic=clock, wall_clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def wav(tmp_path: Path) -> bytes:
    return write_speech_wav(tmp_path / "voice.wav", 1.0).read_bytes()


async def start(
    client: httpx.AsyncClient, size: int, headers: dict[str, str] = AUTH_HEADERS
) -> dict[str, Any]:
    response = await client.post(DIRECT, json={"bytes": size}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_form(url: str, fields: dict[str, str], content: bytes) -> httpx.Response:
    """A POST of a form to the bucket itself, as a client sends it (not through the gateway)."""
    async with httpx.AsyncClient(timeout=30) as bucket:
        return await bucket.post(url, data=fields, files={"file": ("any.name", content)})


async def send(direct: dict[str, Any], content: bytes) -> httpx.Response:
    form = direct["upload"]
    assert form["method"] == "POST"
    return await post_form(form["url"], form["fields"], content)


async def complete(
    client: httpx.AsyncClient, upload_id: str, headers: dict[str, str] = AUTH_HEADERS
) -> httpx.Response:
    return await client.post(f"/api/v1/uploads/{upload_id}/complete", headers=headers)


def under(s3: SeaweedS3, bucket: str, upload_id: str) -> list[str]:
    prefix = f"lipsync/uploads/{upload_id}/"
    return [key.removeprefix(prefix) for key in s3.keys(bucket) if key.startswith(prefix)]


async def test_a_file_sent_to_the_bucket_becomes_an_upload(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, clock: FakeClock
) -> None:
    jpeg = portrait_path().read_bytes()
    direct = await start(client, len(jpeg))
    upload_id = direct["id"]
    assert set(direct) == {"id", "upload", "bytes", "expiresAt", "completeUrl"}
    assert upload_id.startswith("up_") and direct["bytes"] == len(jpeg)
    assert direct["upload"]["url"] == f"{s3.endpoint_url}/{bucket}"
    assert direct["completeUrl"] == f"http://testserver/api/v1/uploads/{upload_id}/complete"
    assert under(s3, bucket, upload_id) == ["pending.json"]
    # Not an upload before it is completed.
    assert_problem(
        await client.get(f"/api/v1/uploads/{upload_id}", headers=AUTH_HEADERS), 404, "not_found"
    )
    assert_problem(await complete(client, upload_id), 409, "upload_not_received")

    assert (await send(direct, jpeg)).status_code == 204
    # Another account cannot complete it (nor learn that it exists).
    assert_problem(await complete(client, upload_id, OTHER_HEADERS), 404, "not_found")
    clock.advance(60)
    done = await complete(client, upload_id, SESSION_HEADERS)
    assert done.status_code == 201, done.text
    upload = done.json()
    assert upload["id"] == upload_id
    assert (upload["kind"], upload["contentType"], upload["bytes"]) == (
        "image",
        "image/jpeg",
        len(jpeg),
    )
    assert upload["url"] == f"http://testserver/api/v1/uploads/{upload_id}/content"
    assert done.headers["location"] == f"/api/v1/uploads/{upload_id}"
    assert under(s3, bucket, upload_id) == ["file", "meta.json"]
    stored = s3.client().head_object(Bucket=bucket, Key=f"lipsync/uploads/{upload_id}/file")
    assert stored["ContentType"] == "image/jpeg"

    # Completing again answers the same object; reading it too.
    again = await complete(client, upload_id)
    assert again.status_code == 200 and again.json() == upload
    read = await client.get(f"/api/v1/uploads/{upload_id}", headers=AUTH_HEADERS)
    assert read.json() == upload
    # Its expiry counts from the request, not from the completion.
    clock.advance(TTL_S - 60)
    assert_problem(
        await client.get(f"/api/v1/uploads/{upload_id}", headers=AUTH_HEADERS), 404, "not_found"
    )


async def test_the_file_that_was_checked_is_the_one_kept(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, wav: bytes
) -> None:
    # The form still works after the completion; sending it again changes nothing kept.
    direct = await start(client, len(wav))
    assert (await send(direct, wav)).status_code == 204
    assert (await complete(client, direct["id"])).status_code == 201
    assert (await send(direct, b"\0" * len(wav))).status_code == 204
    download = await client.get(f"/api/v1/uploads/{direct['id']}/content", headers=AUTH_HEADERS)
    assert download.status_code == 307
    async with httpx.AsyncClient(timeout=30) as bucket_client:
        assert (await bucket_client.get(download.headers["location"])).content == wav
    # A delete removes all of it, what was sent again included.
    assert under(s3, bucket, direct["id"]) == ["file", "incoming", "meta.json"]
    path = f"/api/v1/uploads/{direct['id']}"
    assert (await client.delete(path, headers=AUTH_HEADERS)).status_code == 204
    assert under(s3, bucket, direct["id"]) == []


async def test_a_job_may_name_a_direct_upload_once_it_is_completed(
    client: httpx.AsyncClient, stack: FakeStack, wav: bytes
) -> None:
    jpeg = portrait_path().read_bytes()
    face, voice = await start(client, len(jpeg)), await start(client, len(wav))
    assert (await send(face, jpeg)).status_code == 204
    assert (await send(voice, wav)).status_code == 204
    face_url = (await complete(client, face["id"])).json()["url"]
    # Sent, but its completion never asked for: not an upload yet, so no job.
    pending_url = f"http://testserver/api/v1/uploads/{voice['id']}/content"
    body = {"formState": {"image": face_url, "audio": pending_url}}
    refused = await client.post("/api/v1/lipsync-image", json=body, headers=AUTH_HEADERS)
    errors = assert_problem(refused, 422, "invalid_parameter")["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["formState.audio"]
    assert "was never completed" in errors[0]["message"]
    assert stack.jobs.created == []

    assert (await complete(client, voice["id"])).json()["url"] == pending_url
    accepted = await client.post("/api/v1/lipsync-image", json=body, headers=AUTH_HEADERS)
    assert accepted.status_code == 202, accepted.text
    assert len(stack.jobs.created) == 1


async def test_the_bucket_takes_exactly_the_declared_size(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, wav: bytes
) -> None:
    direct = await start(client, len(wav))
    bigger = await send(direct, wav + b"\0")
    assert bigger.status_code == 400 and "EntityTooLarge" in bigger.text
    smaller = await send(direct, wav[:-1])
    assert smaller.status_code == 400 and "EntityTooSmall" in smaller.text
    assert under(s3, bucket, direct["id"]) == ["pending.json"]
    # The policy holds the key too: nothing else under the id can be written with it.
    form = {**direct["upload"]["fields"], "key": f"lipsync/uploads/{direct['id']}/meta.json"}
    forged = await post_form(direct["upload"]["url"], form, wav)
    assert forged.status_code == 403
    assert under(s3, bucket, direct["id"]) == ["pending.json"]


@pytest.mark.parametrize(
    "content",
    [b"hello, this is text\n" * 100, b"%PDF-1.7\n" + b"0" * 2000, b"GIF89a" + b"\0" * 500],
    ids=["text", "pdf", "gif"],
)
async def test_other_content_is_415_and_deleted(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, content: bytes
) -> None:
    direct = await start(client, len(content))
    assert (await send(direct, content)).status_code == 204
    assert_problem(await complete(client, direct["id"]), 415, "unsupported_media_type")
    assert under(s3, bucket, direct["id"]) == []
    assert_problem(await complete(client, direct["id"]), 404, "not_found")


async def test_each_kind_has_its_own_cap(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, wav: bytes
) -> None:
    # Over the audio cap, under the largest one: the form is given, the completion refuses it.
    padded = wav + b"\0" * (LIMITS["audio"] + 1 - len(wav))
    direct = await start(client, len(padded))
    assert (await send(direct, padded)).status_code == 204
    body = assert_problem(await complete(client, direct["id"]), 413, "file_too_large")
    assert body["detail"] == "an uploaded audio file must be at most 1 MB"
    assert under(s3, bucket, direct["id"]) == []
    exactly = wav + b"\0" * (LIMITS["audio"] - len(wav))
    direct = await start(client, len(exactly))
    assert (await send(direct, exactly)).status_code == 204
    assert (await complete(client, direct["id"])).json()["bytes"] == LIMITS["audio"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_parameter"),
        ({"bytes": 0}, 422, "invalid_parameter"),
        ({"bytes": "12"}, 422, "invalid_parameter"),
        ({"bytes": 1.5}, 422, "invalid_parameter"),
        ({"bytes": 10, "name": "a.wav"}, 422, "invalid_parameter"),
        ({"bytes": 3 * 1024 * 1024 + 1}, 413, "file_too_large"),
    ],
)
async def test_the_declared_size_is_checked(
    client: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    assert_problem(await client.post(DIRECT, json=body, headers=AUTH_HEADERS), status, code)


async def test_bad_bodies_and_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.post(DIRECT, json={"bytes": 10})).status_code == 401
    assert (await complete(client, "up_" + "0" * 40, {})).status_code == 401
    not_json = await client.post(DIRECT, content=b"bytes=10", headers=AUTH_HEADERS)
    assert_problem(not_json, 400, "invalid_json")
    body = assert_problem(
        await client.post(DIRECT, json={}, headers=AUTH_HEADERS), 422, "invalid_parameter"
    )
    assert body["errors"] == [{"field": "bytes", "message": "bytes is required"}]
    zero = assert_problem(
        await client.post(DIRECT, json={"bytes": 0}, headers=AUTH_HEADERS), 422, "invalid_parameter"
    )
    assert zero["errors"] == [{"field": "bytes", "message": "bytes must be at least 1"}]
    for unknown in ("up_" + "0" * 40, "nothing", "up_1"):
        assert_problem(await complete(client, unknown), 404, "not_found")


async def test_a_retry_with_the_same_key_gets_the_same_upload_and_a_fresh_form(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, clock: FakeClock
) -> None:
    jpeg = portrait_path().read_bytes()
    keyed = {**AUTH_HEADERS, "Idempotency-Key": "photo-1"}
    first = (await client.post(DIRECT, json={"bytes": len(jpeg)}, headers=keyed)).json()
    pending = (
        s3.client()
        .get_object(Bucket=bucket, Key=f"lipsync/uploads/{first['id']}/pending.json")["Body"]
        .read()
    )
    # Its answer lost, the client asks again a minute later: the same upload, a new form;
    # the stored request (and so the expiry, counted from it) is the first one.
    clock.advance(60)
    again = await client.post(DIRECT, json={"bytes": len(jpeg)}, headers=keyed)
    assert again.status_code == 201, again.text
    retry = again.json()
    assert retry["id"] == first["id"] and retry["expiresAt"] > first["expiresAt"]
    assert under(s3, bucket, first["id"]) == ["pending.json"]
    assert (
        s3.client()
        .get_object(Bucket=bucket, Key=f"lipsync/uploads/{first['id']}/pending.json")["Body"]
        .read()
        == pending
    )
    # Either form sends the file; another size under the same key is refused.
    assert (await send(first, jpeg)).status_code == 204
    other_size = await client.post(DIRECT, json={"bytes": len(jpeg) + 1}, headers=keyed)
    assert_problem(other_size, 409, "idempotency_key_reused")
    assert (await complete(client, first["id"])).status_code == 201
    # Once completed, the key starts nothing else, and leaves nothing behind.
    after = await client.post(DIRECT, json={"bytes": len(jpeg)}, headers=keyed)
    assert_problem(after, 409, "idempotency_key_reused")
    assert under(s3, bucket, first["id"]) == ["file", "meta.json"]
    # Keys belong to their account; without a key every request is a new upload.
    other = await start(client, len(jpeg), {**OTHER_HEADERS, "Idempotency-Key": "photo-1"})
    assert other["id"] != first["id"]
    assert (await start(client, 10))["id"] != (await start(client, 10))["id"]


async def test_a_bad_idempotency_key_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    for key in ("", "x" * 256, "tab\there"):
        response = await client.post(
            DIRECT, json={"bytes": 10}, headers={**AUTH_HEADERS, "Idempotency-Key": key}
        )
        body = assert_problem(response, 422, "invalid_parameter")
        assert [error["field"] for error in body["errors"]] == ["Idempotency-Key"]


async def test_a_pending_upload_can_be_deleted_and_expires(
    client: httpx.AsyncClient, s3: SeaweedS3, bucket: str, clock: FakeClock, wav: bytes
) -> None:
    direct = await start(client, len(wav))
    assert (await send(direct, wav)).status_code == 204
    path = f"/api/v1/uploads/{direct['id']}"
    assert_problem(await client.delete(path, headers=OTHER_HEADERS), 404, "not_found")
    assert (await client.delete(path, headers=AUTH_HEADERS)).status_code == 204
    assert under(s3, bucket, direct["id"]) == []
    assert_problem(await complete(client, direct["id"]), 404, "not_found")

    # Never completed within the upload's lifetime: as unknown, and the bucket's rule drops it.
    late = await start(client, len(wav))
    assert (await send(late, wav)).status_code == 204
    clock.advance(TTL_S)
    assert_problem(await complete(client, late["id"]), 404, "not_found")


async def test_a_job_takes_a_completed_upload_of_its_account_only(
    client: httpx.AsyncClient, wav: bytes
) -> None:
    jpeg = portrait_path().read_bytes()
    face, voice = await start(client, len(jpeg)), await start(client, len(wav))
    assert (await send(face, jpeg)).status_code == (await send(voice, wav)).status_code == 204
    urls = [(await complete(client, item["id"])).json()["url"] for item in (face, voice)]
    job = {"formState": {"image": urls[0], "audio": urls[1]}}
    own = await client.post("/api/v1/lipsync-image", json=job, headers=AUTH_HEADERS)
    assert own.status_code == 202, own.text
    theirs = await client.post("/api/v1/lipsync-image", json=job, headers=OTHER_HEADERS)
    assert_problem(theirs, 422, "invalid_parameter")


async def test_with_uploads_in_a_folder_the_route_says_so(
    stack: FakeStack, upload_settings: GatewaySettings, clock: FakeClock, tmp_path: Path
) -> None:
    folder = open_store("uploads", tmp_path / "folder", StorageSettings())
    app = create_app(
        upload_settings, stack.backends, uploads=folder, monotonic=clock, wall_clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        body = assert_problem(
            await http.post(DIRECT, json={"bytes": 100}, headers=AUTH_HEADERS),
            409,
            "direct_uploads_unavailable",
        )
        assert "POST /api/v1/uploads" in str(body["detail"])
        # Before the body is read: the answer does not depend on it.
        assert_problem(
            await http.post(DIRECT, content=b"x", headers=AUTH_HEADERS),
            409,
            "direct_uploads_unavailable",
        )
        assert (await http.post(DIRECT, json={"bytes": 100})).status_code == 401
        # A multipart upload is complete already: completing it answers it.
        made = await http.post(
            "/api/v1/uploads",
            files={"file": ("f", portrait_path().read_bytes())},
            headers=AUTH_HEADERS,
        )
        assert made.status_code == 201
        again = await http.post(
            f"/api/v1/uploads/{made.json()['id']}/complete", headers=AUTH_HEADERS
        )
        assert again.status_code == 200 and again.json() == made.json()
        assert_problem(
            await http.post(f"/api/v1/uploads/{made.json()['id']}/complete", headers=OTHER_HEADERS),
            404,
            "not_found",
        )


async def test_the_routes_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    direct = document["paths"][DIRECT]["post"]
    assert direct["operationId"] == "create-direct-upload"
    body = direct["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["bytes"] and body["additionalProperties"] is False
    answer = direct["responses"]["201"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/DirectUploadDoc"}
    form = document["components"]["schemas"]["UploadForm"]
    assert set(form["properties"]) == {"method", "url", "fields"}
    assert set(direct["responses"]) == {"201", "400", "401", "409", "413", "422"}
    completion = document["paths"]["/api/v1/uploads/{id}/complete"]["post"]
    assert set(completion["responses"]) == {"200", "201", "401", "404", "409", "413", "415", "422"}
    for status in ("200", "201"):
        schema = completion["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/UploadDoc"}
