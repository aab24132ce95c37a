"""Bearer parsing and the short-lived authentication cache."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from gateway.auth import Authenticator, Principal, bearer_credential
from gateway.problems import Problem
from tests.gateway.conftest import ACCOUNT, API_KEY, FakeClock, FakeStack

BEARER = f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    "header", [f"Bearer {API_KEY}", f"bearer {API_KEY}", f"  Bearer   {API_KEY}  "]
)
def test_bearer_credential(header: str) -> None:
    assert bearer_credential(header) == API_KEY


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Token abc", f"Basic {API_KEY}", "Bearer a b", "Bearer é"],
)
def test_malformed_authorization_is_401(header: str | None) -> None:
    with pytest.raises(Problem) as caught:
        bearer_credential(header)
    problem = caught.value
    assert (problem.status, problem.code) == (401, "unauthorized")
    assert problem.headers == {"WWW-Authenticate": "Bearer"}


async def test_authenticates_through_the_auth_service(stack: FakeStack) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5)
    principal = await authenticator.authenticate(BEARER)
    assert principal == Principal(account_id=ACCOUNT, key_id="testkey1")
    assert stack.auth.calls == [API_KEY]


async def test_unknown_key_is_401(stack: FakeStack) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5)
    with pytest.raises(Problem) as caught:
        await authenticator.authenticate("Bearer sk_nobody12_" + "x" * 32)
    assert caught.value.status == 401


async def test_success_is_cached_by_digest_never_by_clear_key(
    stack: FakeStack, clock: FakeClock
) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5, clock=clock)
    await authenticator.authenticate(BEARER)
    clock.advance(0.4)
    await authenticator.authenticate(BEARER)
    assert len(stack.auth.calls) == 1
    cache_keys = list(authenticator._cache)
    assert cache_keys == [hashlib.sha256(API_KEY.encode()).hexdigest()]
    assert API_KEY not in repr(authenticator._cache)


async def test_revocation_is_seen_once_the_cache_entry_expires(
    stack: FakeStack, clock: FakeClock
) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5, clock=clock)
    await authenticator.authenticate(BEARER)
    stack.auth.revoked.add(API_KEY)
    clock.advance(0.5)
    with pytest.raises(Problem) as caught:
        await authenticator.authenticate(BEARER)
    assert caught.value.status == 401
    assert len(stack.auth.calls) == 2


async def test_failures_are_not_cached(stack: FakeStack, clock: FakeClock) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5, clock=clock)
    stack.auth.revoked.add(API_KEY)
    with pytest.raises(Problem):
        await authenticator.authenticate(BEARER)
    stack.auth.revoked.clear()
    assert (await authenticator.authenticate(BEARER)).account_id == ACCOUNT


async def test_zero_ttl_disables_the_cache(stack: FakeStack, clock: FakeClock) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0, clock=clock)
    await authenticator.authenticate(BEARER)
    await authenticator.authenticate(BEARER)
    assert len(stack.auth.calls) == 2


async def test_auth_service_down_is_503(stack: FakeStack) -> None:
    await stack.stop("auth")
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5)
    with pytest.raises(Problem) as caught:
        await authenticator.authenticate(BEARER)
    assert (caught.value.status, caught.value.code) == (503, "service_unavailable")


async def test_revoked_key_is_refused_by_the_app_after_the_ttl(
    client, stack: FakeStack, clock: FakeClock
) -> None:
    headers = {"Authorization": BEARER}
    job = f"/api/v1/jobs/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    assert (await client.get(job, headers=headers)).status_code == 404
    stack.auth.revoked.add(API_KEY)
    clock.advance(0.6)
    response = await client.get(job, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_concurrent_requests_of_one_key_share_one_check(stack: FakeStack) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5)
    principals = await asyncio.gather(*(authenticator.authenticate(BEARER) for _ in range(20)))
    assert set(principals) == {Principal(account_id=ACCOUNT, key_id="testkey1")}
    assert stack.auth.calls == [API_KEY]


async def test_a_shared_failed_check_fails_every_waiter_and_is_not_kept(stack: FakeStack) -> None:
    authenticator = Authenticator(stack.backends.auth, cache_s=0.5)
    stack.auth.revoked.add(API_KEY)
    results = await asyncio.gather(
        *(authenticator.authenticate(BEARER) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, Problem) and r.status == 401 for r in results)
    assert len(stack.auth.calls) == 1
    stack.auth.revoked.clear()
    assert await authenticator.authenticate(BEARER) == Principal(ACCOUNT, "testkey1")
    assert len(stack.auth.calls) == 2
