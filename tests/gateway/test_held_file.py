"""A download that has started outlives a delete of its file; one that has not is a 404."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from gateway.held_file import HeldFileResponse

CONTENT = bytes(range(256)) * 64


def app_deleting_before_send(path: Path) -> FastAPI:
    """Opens the file, then deletes it before the response is sent: the race of a GET and
    a DELETE of the same job or upload."""
    app = FastAPI()

    @app.get("/file")
    def file() -> Response:
        response = HeldFileResponse(path, media_type="application/octet-stream")
        path.unlink()
        return response

    return app


async def test_the_response_reads_the_opened_file_after_it_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "result.mp4"
    path.write_bytes(CONTENT)
    transport = httpx.ASGITransport(app=app_deleting_before_send(path))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/file")
        assert not path.exists()
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(CONTENT))
        assert response.content == CONTENT


async def test_ranges_are_served_from_the_held_file(tmp_path: Path) -> None:
    path = tmp_path / "result.mp4"
    path.write_bytes(CONTENT)
    transport = httpx.ASGITransport(app=app_deleting_before_send(path))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/file", headers={"Range": "bytes=10-19"})
        assert response.status_code == 206
        assert response.content == CONTENT[10:20]


def test_a_file_already_gone_raises_for_the_route_to_answer_404(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HeldFileResponse(tmp_path / "gone.mp4", media_type="video/mp4")


def test_the_descriptor_is_released(tmp_path: Path) -> None:
    path = tmp_path / "result.mp4"
    path.write_bytes(CONTENT)
    before = len(os.listdir("/proc/self/fd"))
    response = HeldFileResponse(path, media_type="video/mp4")
    assert len(os.listdir("/proc/self/fd")) == before + 1
    response.close()
    response.close()
    assert len(os.listdir("/proc/self/fd")) == before
