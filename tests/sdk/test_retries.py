"""The SDK's retries: what is retried, how often, after how long, and that a create stays one job.

Against real loopback servers (tests/sdk/servers.py): a scripted one for the
429s and 503s, and a proxy in front of the real stack that loses the first
answer of a create, so the SDK's retry reaches a gateway that already made
the job; the Idempotency-Key must keep it to one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from lipsync_client import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    RateLimitError,
    ServerError,
    ValidationError,
)
from lipsync_client.errors import APIError, parse_retry_after
from lipsync_client.retries import RetryPolicy

from tests.sdk.conftest import SdkStack
from tests.sdk.servers import DroppingProxy, ScriptedServer

BALANCE = {"api_credits": 7, "user_credits": 0}


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer([])
    yield server
    server.close()


def test_429_with_retry_after_then_503_then_success(scripted: ScriptedServer) -> None:
    scripted.answers = [
        (429, {"retry-after": "1"}, {"status": 429, "code": "rate_limited"}),
        (503, {}, {"status": 503, "code": "unavailable"}),
        (200, {}, BALANCE),
    ]
    started = time.monotonic()
    with Client(api_key="sk_test", base_url=scripted.url, max_retries=2) as client:
        assert client.balance().api_credits == 7
    # Retry-After: 1 was honoured (at least a second), the 503 backed off briefly.
    assert 1.0 <= time.monotonic() - started < 10
    assert len(scripted.requests) == 3
    assert all(r[2]["authorization"] == "Bearer sk_test" for r in scripted.requests)


def test_gives_up_after_max_retries_with_the_last_problem(scripted: ScriptedServer) -> None:
    scripted.answers = [(503, {}, {"status": 503, "code": "unavailable", "detail": "busy"})] * 3
    with Client(api_key="sk_test", base_url=scripted.url, max_retries=1) as client:
        with pytest.raises(ServerError) as raised:
            client.balance()
    assert (raised.value.status, raised.value.code, raised.value.detail) == (
        503,
        "unavailable",
        "busy",
    )
    assert len(scripted.requests) == 2


def test_rate_limit_error_carries_retry_after(scripted: ScriptedServer) -> None:
    scripted.answers = [(429, {"retry-after": "0"}, {"status": 429, "code": "rate_limited"})] * 2
    with Client(api_key="sk_test", base_url=scripted.url, max_retries=1) as client:
        with pytest.raises(RateLimitError) as raised:
            client.balance()
    assert raised.value.retry_after == 0
    assert len(scripted.requests) == 2


@pytest.mark.parametrize(
    ("status", "kind"), [(401, AuthenticationError), (422, ValidationError), (400, ValidationError)]
)
def test_4xx_is_never_retried(scripted: ScriptedServer, status: int, kind: type) -> None:
    problem = {
        "status": status,
        "code": "invalid_parameter",
        "detail": "formState.seed must be an integer",
        "errors": [{"field": "formState.seed", "message": "must be an integer"}],
    }
    scripted.answers = [(status, {}, problem)] * 3
    with Client(api_key="sk_test", base_url=scripted.url, max_retries=3) as client:
        with pytest.raises(kind) as raised:
            client.lipsync_image("https://example.com/a.jpg", "https://example.com/a.wav", seed=1)
    assert len(scripted.requests) == 1
    assert raised.value.errors[0].field == "formState.seed"


def test_connection_refused_is_retried_then_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(api_key="sk_test", base_url=f"http://127.0.0.1:{port}", max_retries=2)
    started = time.monotonic()
    with pytest.raises(APIConnectionError, match="after 3 tries"):
        client.balance()
    # Two backoffs of 0.25-0.5 s and 0.5-1 s.
    assert 0.7 <= time.monotonic() - started < 5


def test_backoff_doubles_under_a_cap_with_jitter() -> None:
    policy = RetryPolicy(max_retries=10, base_delay_s=0.5, max_delay_s=8)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = {policy.backoff(attempt) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(delays) > 1


async def test_async_client_retries_the_same_way(scripted: ScriptedServer) -> None:
    scripted.answers = [(502, {}, {"status": 502}), (200, {}, BALANCE)]
    async with AsyncClient(api_key="sk_test", base_url=scripted.url) as client:
        assert (await client.balance()).api_credits == 7
    assert len(scripted.requests) == 2


def _is_create(request: bytes) -> bool:
    return request.startswith(b"POST /api/v1/lipsync-image ")


@pytest.mark.integration
def test_a_lost_create_answer_is_retried_into_the_same_job(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=50)
    proxy = DroppingProxy(sdk_stack.base_url, drops=1, should_drop=_is_create)
    try:
        with Client(api_key=account.key, base_url=proxy.url) as client:
            job = client.lipsync_image(
                sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav")
            )
            # The first answer was lost after the gateway made the job.
            assert len(proxy.dropped) == 1 and b" 202 " in proxy.dropped[0].split(b"\r\n")[0]
            job.wait(timeout=120)
            listed = list(client.jobs.list())
    finally:
        proxy.close()
    assert job.status == "completed", job.error
    assert [j.id for j in listed] == [job.id]
    # Charged once: one job of 5 billed seconds at 480p.
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as direct:
        assert direct.balance().api_credits == 50 - 10


@pytest.mark.integration
def test_without_retries_a_lost_answer_is_a_connection_error(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=50)
    proxy = DroppingProxy(sdk_stack.base_url, drops=1, should_drop=_is_create)
    try:
        with Client(api_key=account.key, base_url=proxy.url, max_retries=0) as client:
            with pytest.raises(APIConnectionError):
                client.lipsync_image(sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav"))
    finally:
        proxy.close()


def test_retry_after_as_an_http_date_and_problem_fields() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
    assert parse_retry_after("7") == 7 and parse_retry_after("soon") is None
    response = httpx.Response(
        429,
        headers={"retry-after": "3"},
        json={"status": 429, "code": "rate_limited", "title": "Too Many Requests"},
    )
    error = APIError.from_response(response)
    assert isinstance(error, RateLimitError) and error.retry_after == 3
    assert str(error) == "429 rate_limited"
    plain = APIError.from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(plain, ServerError) and "bad gateway" in plain.detail
