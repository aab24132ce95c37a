"""A refused body leaves the keep-alive connection usable, over a real socket.

A lone surrogate (`"\\ud800"`) in a JSON body used to end in a 500, after
which uvicorn closes the connection. The in-process client of tests/gateway
has no connections; here one httpx connection to the real gateway carries a
bad body to every JSON endpoint, each followed by a good call.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Platform
from tests.integration.harness import bearer

pytestmark = pytest.mark.integration

PASSWORD = "a long enough password"
# Where a body gets its lone surrogate, written as the JSON escape.
MARK = "@@"


def with_surrogate(body: dict[str, Any]) -> str:
    return json.dumps(body).replace(MARK, "\\ud800")


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried `response`."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_a_lone_surrogate_is_a_422_and_the_connection_stays_open(platform: Platform) -> None:
    _, key = platform.account(credits=0)
    form = {"image": f"{platform.media.url}/portrait.jpg", "audio": "https://cdn.example.com/a"}
    email = f"keepalive-{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=platform.stack.http_url, timeout=30, limits=one_connection) as http:
        signup = http.post("/api/v1/auth/signup", json=credentials)
        assert signup.status_code == 201, signup.text
        port = local_port(signup)
        session = bearer(http.post("/api/v1/auth/login", json=credentials).json()["token"])
        # (path, headers, body with MARK, a good call on the same connection).
        cases: list[tuple[str, dict[str, str], dict[str, Any], tuple[str, str, Any]]] = [
            (
                "/api/v1/lipsync-image",
                bearer(key),
                {"formState": {**form, "prompt": MARK}},
                ("GET", "/api/v1/balance", None),
            ),
            (
                "/api/v1/estimate",
                bearer(key),
                {"model": "lipsync-image", "formState": {**form, "prompt": MARK}},
                ("GET", "/api/v1/balance", None),
            ),
            (
                "/api/v1/auth/signup",
                {},
                {"email": f"x{MARK}@example.com", "password": PASSWORD},
                ("POST", "/api/v1/auth/login", credentials),
            ),
            (
                "/api/v1/auth/login",
                {},
                {"email": email, "password": PASSWORD + MARK},
                ("POST", "/api/v1/auth/login", credentials),
            ),
            (
                "/api/v1/keys",
                session,
                {"name": MARK},
                ("POST", "/api/v1/keys", {"name": "after"}),
            ),
        ]
        for path, headers, bad, (method, next_path, good) in cases:
            refused = http.post(
                path,
                content=with_surrogate(bad),
                headers={**headers, "Content-Type": "application/json"},
            )
            assert refused.status_code == 422, (path, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "invalid_parameter"
            assert "close" not in refused.headers.get("connection", "").lower(), path
            following = http.request(method, next_path, json=good, headers=headers)
            assert following.is_success, (path, following.text)
            # The same socket carried both: the refusal did not cost the connection.
            assert local_port(refused) == local_port(following) == port, path
