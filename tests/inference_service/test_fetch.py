"""Downloads through the URL guard, against a real local HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from inference_service.failures import JobFailure
from inference_service.fetch import download
from lipsync_common.guarded_http import GuardedTransport
from tests.inference_service.trickle import TrickleOrigin

BODY = b"x" * 5000


class Origin:
    """Serves /file, /chunked, /empty, /redirect (to /file); anything else is 404."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/file":
                    self.send_response(200)
                    self.send_header("content-length", str(len(BODY)))
                    self.end_headers()
                    self.wfile.write(BODY)
                elif self.path == "/chunked":
                    # No content-length: the limit must hold on the bytes read.
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(BODY)
                    self.close_connection = True
                elif self.path == "/empty":
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("location", "/file")
                    self.end_headers()
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.server.shutdown()


async def loopback(host: str, port: int) -> Sequence[str]:
    """Every name is this machine: no test lookup or connection leaves it."""
    return ["127.0.0.1"]


def guarded(allow_private: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=5,
        transport=GuardedTransport(allow_private, loopback),
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded(True) as c:
        yield c


async def test_a_file_is_downloaded(
    origin: Origin, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    dest = tmp_path / "a"
    size = await download(
        client, "formState.audio", f"{origin.url}/file", dest, 10_000, timeout_s=5
    )
    assert size == len(BODY) and dest.read_bytes() == BODY


async def test_redirects_are_followed_through_the_guard(
    origin: Origin, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    dest = tmp_path / "a"
    await download(client, "formState.audio", f"{origin.url}/redirect", dest, 10_000, timeout_s=5)
    assert dest.read_bytes() == BODY


async def test_a_public_url_cannot_redirect_into_the_private_network(
    origin: Origin, tmp_path: Path
) -> None:
    # The first hop is refused already here (loopback); the point is that each
    # hop is checked, so the message names the field and the reason.
    async with guarded(False) as client:
        with pytest.raises(JobFailure, match=r"formState.image: .*private or local"):
            await download(
                client,
                "formState.image",
                f"{origin.url}/redirect",
                tmp_path / "a",
                10_000,
                timeout_s=5,
            )


@pytest.mark.parametrize("path", ["/file", "/chunked"])
async def test_the_size_limit_holds_with_and_without_content_length(
    origin: Origin, client: httpx.AsyncClient, tmp_path: Path, path: str
) -> None:
    with pytest.raises(JobFailure, match="audio is larger than the limit"):
        await download(
            client, "formState.audio", origin.url + path, tmp_path / "a", 4000, timeout_s=5
        )


@pytest.mark.parametrize(
    ("path", "message"),
    [("/missing", "answered HTTP 404"), ("/empty", "is empty")],
)
async def test_unusable_answers_fail_with_a_clear_message(
    origin: Origin, client: httpx.AsyncClient, tmp_path: Path, path: str, message: str
) -> None:
    with pytest.raises(JobFailure, match=f"audio could not be downloaded: .*{message}"):
        await download(
            client, "formState.audio", origin.url + path, tmp_path / "a", 10_000, timeout_s=5
        )


async def test_an_unreachable_host_fails_cleanly(client: httpx.AsyncClient, tmp_path: Path) -> None:
    with pytest.raises(JobFailure, match="could not be downloaded: ConnectError"):
        await download(
            client, "formState.audio", "http://127.0.0.1:9/x", tmp_path / "a", 10, timeout_s=5
        )


async def test_a_trickling_download_fails_at_its_total_deadline(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A byte every 0.1 s never trips the client's 5 s per-read timeout.
    with TrickleOrigin(tmp_path) as slow:
        started = time.monotonic()
        with pytest.raises(JobFailure) as caught:
            await download(
                client,
                "formState.audio",
                f"{slow.url}/slow/a.wav",
                tmp_path / "a",
                1 << 20,
                timeout_s=1,
            )
    assert str(caught.value) == "formState.audio took longer than 1 s to download"
    assert time.monotonic() - started < 3


# Issue 9, item 7: downloads go through the transport that resolves once and
# connects to the address it checked; the host name is kept for the request.
async def test_a_named_host_is_downloaded_through_the_guarded_transport(
    origin: Origin, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = origin.server.server_address[1]
    dest = tmp_path / "a"
    size = await download(
        client, "formState.audio", f"http://media.test:{port}/redirect", dest, 10_000, timeout_s=5
    )
    assert size == len(BODY) and dest.read_bytes() == BODY
