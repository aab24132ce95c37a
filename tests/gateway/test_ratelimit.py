"""Token buckets per credential: 429 with Retry-After once a key's minute is spent."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from gateway.app import create_app
from gateway.problems import Problem
from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from tests.gateway.conftest import AUTH_HEADERS, OTHER_KEY, FakeClock, FakeStack, assert_problem

JOB = "/api/v1/jobs/00000000-0000-0000-0000-000000000000"


def test_bucket_allows_the_limit_then_refuses_until_a_token_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    for _ in range(60):
        limiter.check("key")
    with pytest.raises(Problem) as caught:
        limiter.check("key")
    assert (caught.value.status, caught.value.headers["Retry-After"]) == (429, "1")
    limiter.check("other")
    clock.advance(1.0)
    limiter.check("key")


def test_retry_after_counts_whole_seconds_to_the_next_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock)
    limiter.check("key")
    limiter.check("key")
    with pytest.raises(Problem) as caught:
        limiter.check("key")
    assert caught.value.headers["Retry-After"] == "30"


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0)
    for _ in range(1000):
        limiter.check("key")


async def test_app_answers_429_per_key(
    stack: FakeStack, settings: GatewaySettings, clock: FakeClock
) -> None:
    app = create_app(replace(settings, rate_limit_per_min=3), stack.backends, monotonic=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        for _ in range(3):
            assert (await http.get(JOB, headers=AUTH_HEADERS)).status_code == 404
        limited = await http.get(JOB, headers=AUTH_HEADERS)
        assert_problem(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        other = await http.get(JOB, headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert other.status_code == 404
