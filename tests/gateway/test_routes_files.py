"""Signed result downloads: the signature is the credential, anything else is 404."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.problems import Problem
from gateway.routes_files import resolve
from gateway.settings import GatewaySettings
from lipsync_common.signing import sign_path
from tests.gateway.conftest import SIGNING_KEY, FakeClock, assert_problem

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4


@pytest.fixture
def result(settings: GatewaySettings) -> str:
    (settings.results_dir / "job-1.mp4").write_bytes(VIDEO_BYTES)
    return "job-1.mp4"


async def test_signed_download(client: httpx.AsyncClient, result: str, clock: FakeClock) -> None:
    path = sign_path(SIGNING_KEY, result, int(clock.now) + 3600)
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.content == VIDEO_BYTES
    assert response.headers["cache-control"] == "private, max-age=3600"


async def test_range_request(client: httpx.AsyncClient, result: str, clock: FakeClock) -> None:
    path = sign_path(SIGNING_KEY, result, int(clock.now) + 60)
    response = await client.get(path, headers={"Range": "bytes=4-11"})
    assert response.status_code == 206
    assert response.content == VIDEO_BYTES[4:12]
    assert response.headers["content-range"] == f"bytes 4-11/{len(VIDEO_BYTES)}"


async def test_head_gives_the_size(
    client: httpx.AsyncClient, result: str, clock: FakeClock
) -> None:
    response = await client.head(sign_path(SIGNING_KEY, result, int(clock.now) + 60))
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(VIDEO_BYTES)
    assert response.content == b""


async def test_bad_signature_is_404(
    client: httpx.AsyncClient, result: str, clock: FakeClock
) -> None:
    path = sign_path(b"another-key", result, int(clock.now) + 60)
    assert_problem(await client.get(path), 404, "not_found")


async def test_signature_of_another_file_is_404(
    client: httpx.AsyncClient, result: str, settings: GatewaySettings, clock: FakeClock
) -> None:
    (settings.results_dir / "job-2.mp4").write_bytes(b"other")
    path = sign_path(SIGNING_KEY, "job-2.mp4", int(clock.now) + 60)
    assert_problem(await client.get(path.replace("job-2.mp4", result, 1)), 404, "not_found")


async def test_expired_url_is_404(client: httpx.AsyncClient, result: str, clock: FakeClock) -> None:
    path = sign_path(SIGNING_KEY, result, int(clock.now) + 60)
    assert (await client.get(path)).status_code == 200
    clock.advance(61)
    assert_problem(await client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    "query", ["", "?expires=abc&sig=x", "?expires=1e9&sig=x", "?expires=99999999999", "?sig=x"]
)
async def test_missing_or_junk_query_is_404(
    client: httpx.AsyncClient, result: str, query: str
) -> None:
    assert_problem(await client.get(f"/files/{result}{query}"), 404, "not_found")


async def test_signed_but_missing_file_is_404(client: httpx.AsyncClient, clock: FakeClock) -> None:
    path = sign_path(SIGNING_KEY, "gone.mp4", int(clock.now) + 60)
    assert_problem(await client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    "object_key", ["..", "../secret.mp4", "..%2Fsecret.mp4", "%2e%2e", ".hidden", "a..b", "a/b"]
)
async def test_path_traversal_is_404_even_when_signed(
    client: httpx.AsyncClient, settings: GatewaySettings, clock: FakeClock, object_key: str
) -> None:
    secret = b"secret-bytes-7f3a"
    (settings.results_dir.parent / "secret.mp4").write_bytes(secret)
    (settings.results_dir / ".hidden").write_bytes(secret)
    expires = int(clock.now) + 60
    path = sign_path(SIGNING_KEY, object_key, expires)
    response = await client.get(path)
    assert secret not in response.content
    assert not response.headers["content-type"].startswith("video/")
    if response.url.path.startswith("/files/"):
        assert_problem(response, 404, "not_found")
    # Otherwise the client resolved the dots (`/files/..` is `/`, the console
    # page): the request never named a file.


@pytest.mark.parametrize("object_key", ["..", "../x", "x/y", "", ".env", "a..mp4", "sp ace"])
def test_resolve_refuses_anything_but_a_plain_name(tmp_path: Path, object_key: str) -> None:
    with pytest.raises(Problem):
        resolve(tmp_path, object_key)


def test_resolve_refuses_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (results / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    with pytest.raises(Problem):
        resolve(results, "link.mp4")


def test_resolve_finds_a_result(tmp_path: Path) -> None:
    (tmp_path / "a_b-1.mp4").write_bytes(b"x")
    assert resolve(tmp_path, "a_b-1.mp4") == (tmp_path / "a_b-1.mp4").resolve()
