"""A lone surrogate in a JSON body is a 422 naming the field, on every JSON endpoint.

`"\\ud800"` is valid JSON syntax but not Unicode text: it used to reach protobuf,
the fingerprint or the problem answer, fail to encode there and come back a
500 that cost the client its connection (tests/integration/test_keepalive.py
checks the connection over a real socket).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from gateway.app import create_app
from gateway.clients import Backends
from gateway.settings import GatewaySettings
from tests.auth_service.auth_harness import AuthHarness, running_auth
from tests.gateway.conftest import FakeClock, FakeStack, assert_problem

PASSWORD = "correct horse battery"
EMAIL = "ada@example.com"
FORM = {"video": "https://cdn.example.com/in.mp4", "audio": "https://cdn.example.com/in.mp3"}
# Where a body below gets its lone surrogate, written as the JSON escape.
MARK = "@@"


def with_surrogate(body: dict[str, Any]) -> str:
    return json.dumps(body).replace(MARK, "\\ud800")


@pytest.fixture
async def real_auth(tmp_path: Path) -> AsyncIterator[AuthHarness]:
    async with running_auth(tmp_path) as harness:
        yield harness


@pytest.fixture
async def api(
    stack: FakeStack, settings: GatewaySettings, clock: FakeClock, real_auth: AuthHarness
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway over the real auth service, for sessions and keys, and the fakes."""
    backends = Backends.from_channels(
        grpc.aio.insecure_channel(real_auth.addr),
        *(
            grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports[name]}")
            for name in ("billing", "jobs", "inference")
        ),
    )
    app = create_app(settings, backends, monotonic=clock, wall_clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http
    await backends.close()


async def credentials(api: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    """Headers with a session token and with an API key of a new account."""
    signed = await api.post("/api/v1/auth/signup", json={"email": EMAIL, "password": PASSWORD})
    assert signed.status_code == 201, signed.text
    login = await api.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    session = {"Authorization": f"Bearer {login.json()['token']}"}
    created = await api.post("/api/v1/keys", json={"name": "ci"}, headers=session)
    assert created.status_code == 201, created.text
    return {"session": session, "key": {"Authorization": f"Bearer {created.json()['key']}"}}


# (path, credential, body with MARK, the field named, a valid body).
CASES: list[tuple[str, str | None, dict[str, Any], str, dict[str, Any]]] = [
    (
        "/api/v1/lipsync-video",
        "key",
        {"formState": {**FORM, "prompt": f"smile {MARK}"}},
        "formState.prompt",
        {"formState": FORM},
    ),
    (
        "/api/v1/lipsync-video",
        "key",
        {"formState": FORM, f"x{MARK}": 1},
        "x\\ud800",
        {"formState": FORM},
    ),
    (
        "/api/v1/estimate",
        "key",
        {"model": "lipsync-video", "formState": {**FORM, "prompt": MARK}},
        "formState.prompt",
        {"model": "lipsync-video", "formState": FORM},
    ),
    (
        "/api/v1/auth/signup",
        None,
        {"email": f"bob{MARK}@example.com", "password": PASSWORD},
        "email",
        {"email": "bob@example.com", "password": PASSWORD},
    ),
    (
        "/api/v1/auth/login",
        None,
        {"email": EMAIL, "password": PASSWORD + MARK},
        "password",
        {"email": EMAIL, "password": PASSWORD},
    ),
    ("/api/v1/keys", "session", {"name": f"laptop {MARK}"}, "name", {"name": "laptop"}),
]


@pytest.mark.parametrize(("path", "credential", "bad", "field", "good"), CASES)
async def test_a_lone_surrogate_is_a_422_naming_the_field_and_the_next_call_works(
    api: httpx.AsyncClient,
    path: str,
    credential: str | None,
    bad: dict[str, Any],
    field: str,
    good: dict[str, Any],
) -> None:
    account = await credentials(api)
    headers = account[credential] if credential else {}
    response = await api.post(path, content=with_surrogate(bad), headers=headers)
    body = assert_problem(response, 422, "invalid_parameter")
    assert [error["field"] for error in body["errors"]] == [field]
    assert body["detail"].startswith(f"{field} ")
    assert "lone surrogate" in body["detail"]
    assert (await api.post(path, json=good, headers=headers)).is_success


async def test_utf8_encoded_surrogate_bytes_are_a_422_too(api: httpx.AsyncClient) -> None:
    bad = json.dumps({"email": f"{MARK}@example.com", "password": PASSWORD}).encode()
    # U+D800 encoded as if it were a character: not UTF-8, yet json.loads decodes it.
    bad = bad.replace(MARK.encode(), b"\xed\xa0\x80")
    response = await api.post("/api/v1/auth/signup", content=bad)
    body = assert_problem(response, 422, "invalid_parameter")
    assert body["errors"][0]["field"] == "email"
