"""`Job.download`: whole or nothing, checked against Content-Length, never with the API key.

A raw loopback server plays the output host: one that cuts the body short
(the connection closes mid-file), one that serves the file, and a record of
the headers each request carried.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lipsync_client import Client, DownloadError, Job

from tests.sdk.servers import read_message

BODY = bytes(range(256)) * 4096  # 1 MiB


class OutputHost:
    def __init__(self) -> None:
        self.short = False
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/files/out.mp4"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.requests.append(read_message(conn))
                head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(BODY)}\r\n"
                conn.sendall(f"{head}content-type: video/mp4\r\nconnection: close\r\n\r\n".encode())
                conn.sendall(BODY[: len(BODY) // 3] if self.short else BODY)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def host() -> Iterator[OutputHost]:
    server = OutputHost()
    yield server
    server.close()


def completed_job(client: Client, url: str) -> Job:
    job = Job(id="job-1", _client=client)
    job._update({"id": "job-1", "status": "completed", "output": url})
    return job


def test_download_is_whole_renamed_and_keyless(host: OutputHost, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"an older file")
    seen: list[tuple[int, int | None]] = []
    with Client(api_key="sk_secret", base_url="http://127.0.0.1:1") as client:
        path = completed_job(client, host.url).download(target, lambda *p: seen.append(p))
    assert path == target and target.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))
    assert list(tmp_path.iterdir()) == [target]
    # The output URL needs no key, so the key never goes to it.
    assert b"sk_secret" not in host.requests[0] and b"authorization" not in host.requests[0].lower()


def test_a_short_body_leaves_the_old_file_and_no_part(host: OutputHost, tmp_path: Path) -> None:
    host.short = True
    target = tmp_path / "out.mp4"
    target.write_bytes(b"an older file")
    with Client(api_key="sk_secret", base_url="http://127.0.0.1:1", max_retries=1) as client:
        with pytest.raises(DownloadError):
            completed_job(client, host.url).download(target)
    # Tried twice (one retry), then gave up without touching the target.
    assert len(host.requests) == 2
    assert target.read_bytes() == b"an older file"
    assert list(tmp_path.iterdir()) == [target]


def test_no_output_no_download(tmp_path: Path) -> None:
    with Client(api_key="sk_secret", base_url="http://127.0.0.1:1") as client:
        job = Job(id="job-2", _client=client)
        job._update({"id": "job-2", "status": "failed", "error": "no face found in image"})
        with pytest.raises(DownloadError, match="status failed"):
            job.download(tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
