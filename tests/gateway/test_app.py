"""The assembled app: every error of every route is problem+json."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest

from tests.gateway.conftest import AUTH_HEADERS, FakeStack

IMAGE = {"image": "https://c.example.com/i.png", "audio": "https://c.example.com/a.mp3"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "/api/v1/lipsync-image", AUTH_HEADERS, b"{oops", 400),
        ("POST", "/api/v1/lipsync-image", {}, json.dumps({"formState": IMAGE}).encode(), 401),
        ("POST", "/api/v1/lipsync-image", AUTH_HEADERS, b" " * 70_000, 413),
        (
            "POST",
            "/api/v1/lipsync-video",
            AUTH_HEADERS,
            json.dumps({"formState": {}}).encode(),
            422,
        ),
        ("GET", "/api/v1/jobs/nope", AUTH_HEADERS, b"", 404),
        ("GET", "/files/x.mp4", {}, b"", 404),
        ("GET", "/api/v2/anything", {}, b"", 404),
        ("DELETE", "/api/v1/lipsync-image", AUTH_HEADERS, b"", 405),
        ("PUT", "/healthz", {}, b"", 405),
    ],
)
async def test_every_error_is_problem_json(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    response = await client.request(method, path, headers=headers, content=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"] == f"http://testserver/api/v1/errors#{problem['code']}"
    assert set(problem) >= {"type", "title", "status", "code", "detail"}


async def test_payment_and_conflict_errors_are_problem_json(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    body = json.dumps({"formState": IMAGE})
    headers = {**AUTH_HEADERS, "Idempotency-Key": "same"}
    assert (
        await client.post("/api/v1/lipsync-image", content=body, headers=headers)
    ).status_code == 202
    changed = json.dumps({"formState": {**IMAGE, "seed": 1}})
    conflict = await client.post("/api/v1/lipsync-image", content=changed, headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    stack.jobs.refusal = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "insufficient credits: need 10, have 3",
    )
    payment = await client.post("/api/v1/lipsync-image", content=body, headers=AUTH_HEADERS)
    assert payment.status_code == 402
    assert payment.headers["content-type"] == "application/problem+json"
