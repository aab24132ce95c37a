"""Account and billing endpoints over the real auth and billing services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from billing_service import pricing
from gateway.app import create_app
from gateway.clients import Backends
from gateway.settings import GatewaySettings
from tests.auth_service.auth_harness import AuthHarness, running_auth
from tests.billing_service.billing_harness import BillingHarness, running_billing
from tests.gateway.conftest import FakeClock, FakeStack, assert_problem

PASSWORD = "correct horse battery"
JOB = "/api/v1/jobs/00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def real_auth(tmp_path: Path) -> AsyncIterator[AuthHarness]:
    async with running_auth(tmp_path) as harness:
        yield harness


@pytest.fixture
async def real_billing(tmp_path: Path) -> AsyncIterator[BillingHarness]:
    async with running_billing(tmp_path) as harness:
        yield harness


@pytest.fixture
async def api(
    stack: FakeStack,
    settings: GatewaySettings,
    clock: FakeClock,
    real_auth: AuthHarness,
    real_billing: BillingHarness,
) -> AsyncIterator[httpx.AsyncClient]:
    backends = Backends.from_channels(
        grpc.aio.insecure_channel(real_auth.addr),
        grpc.aio.insecure_channel(real_billing.addr),
        grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['jobs']}"),
    )
    app = create_app(settings, backends, monotonic=clock, wall_clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http
    await backends.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def session(api: httpx.AsyncClient, email: str = "ada@example.com") -> tuple[str, str]:
    """Sign up and log in; returns (account_id, session token)."""
    signed = await api.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert signed.status_code == 201, signed.text
    logged = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert logged.status_code == 200, logged.text
    assert logged.json()["expires_at"].endswith("Z")
    return signed.json()["account_id"], logged.json()["token"]


async def test_signup_login_create_list_and_revoke_a_key(api: httpx.AsyncClient) -> None:
    _, token = await session(api)
    created = await api.post("/api/v1/keys", json={"name": "ci"}, headers=bearer(token))
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"key_id", "key", "name", "created_at"}
    key = body["key"]
    assert key.startswith(f"sk_{body['key_id']}_")

    listed = (await api.get("/api/v1/keys", headers=bearer(token))).json()["data"]
    assert [(k["key_id"], k["name"], k["revoked"]) for k in listed] == [
        (body["key_id"], "ci", False)
    ]
    assert key not in str(listed) and listed[0]["prefix"] == key[:12]

    assert (await api.get(JOB, headers=bearer(key))).status_code == 404
    revoked = await api.delete(f"/api/v1/keys/{body['key_id']}", headers=bearer(token))
    assert revoked.status_code == 204
    # The replica that revoked forgets the key at once, cache or not.
    assert_problem(await api.get(JOB, headers=bearer(key)), 401, "unauthorized")


async def test_signup_errors(api: httpx.AsyncClient) -> None:
    short = await api.post("/api/v1/auth/signup", json={"email": "a@example.com", "password": "x"})
    body = assert_problem(short, 422, "invalid_parameter")
    # The rule and its message are auth's; the gateway names the field.
    assert body["errors"] == [
        {"field": "password", "message": "password must be at least 10 characters"}
    ]
    bad_email = await api.post("/api/v1/auth/signup", json={"email": "nope", "password": PASSWORD})
    assert assert_problem(bad_email, 422, "invalid_parameter")["errors"][0]["field"] == "email"
    await session(api)
    again = await api.post(
        "/api/v1/auth/signup", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert_problem(again, 409, "email_taken")


async def test_account_bodies_are_checked_by_their_documented_models(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/api/v1/auth/signup", json={"email": "", "pin": 1234})
    assert assert_problem(response, 422, "invalid_parameter")["errors"] == [
        {"field": "email", "message": "email is required"},
        {"field": "password", "message": "password is required"},
        {"field": "pin", "message": "pin is an unknown parameter"},
    ]
    response = await api.post("/api/v1/auth/login", json={"email": 1, "password": PASSWORD})
    assert assert_problem(response, 422, "invalid_parameter")["errors"] == [
        {"field": "email", "message": "email must be a string"}
    ]


async def test_key_name_rule_is_auths(api: httpx.AsyncClient) -> None:
    _, token = await session(api)
    long = await api.post("/api/v1/keys", json={"name": "n" * 101}, headers=bearer(token))
    assert assert_problem(long, 422, "invalid_parameter")["errors"] == [
        {"field": "name", "message": "name must be at most 100 characters"}
    ]
    not_text = await api.post("/api/v1/keys", json={"name": 7}, headers=bearer(token))
    assert assert_problem(not_text, 422, "invalid_parameter")["errors"][0]["field"] == "name"
    fine = await api.post("/api/v1/keys", json={"name": "n" * 100}, headers=bearer(token))
    assert fine.status_code == 201


async def test_login_failures_look_alike(api: httpx.AsyncClient) -> None:
    await session(api)
    wrong = await api.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "x" * 12}
    )
    unknown = await api.post(
        "/api/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
    )
    assert assert_problem(wrong, 401, "invalid_login") == assert_problem(
        unknown, 401, "invalid_login"
    )


async def test_logout_stops_the_token(api: httpx.AsyncClient) -> None:
    _, token = await session(api)
    assert (await api.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
    assert_problem(await api.get("/api/v1/keys", headers=bearer(token)), 401, "unauthorized")


async def test_api_key_cannot_manage_keys_but_a_session_can_create_jobs(
    api: httpx.AsyncClient,
) -> None:
    _, token = await session(api)
    key = (await api.post("/api/v1/keys", headers=bearer(token))).json()["key"]
    assert_problem(await api.get("/api/v1/keys", headers=bearer(key)), 403, "session_required")
    assert_problem(await api.post("/api/v1/keys", headers=bearer(key)), 403, "session_required")
    assert_problem(
        await api.get("/api/v1/webhook-secret", headers=bearer(key)), 403, "session_required"
    )
    # The console creates jobs with its session (API.md "The web console"): the
    # request passes authentication and meets the body's validation.
    create = await api.post("/api/v1/lipsync-image", headers=bearer(token), content=b"{}")
    assert_problem(create, 422, "invalid_parameter")


async def test_a_session_reads_and_controls_jobs(api: httpx.AsyncClient) -> None:
    # The console drives jobs with its session: reads and job control take one.
    _, token = await session(api)
    assert_problem(await api.get(JOB, headers=bearer(token)), 404, "not_found")
    listed = await api.get("/api/v1/jobs", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"data": [], "next_cursor": None}
    assert_problem(await api.post(f"{JOB}/cancel", headers=bearer(token)), 404, "not_found")


async def test_revoking_a_key_of_another_account_is_404(api: httpx.AsyncClient) -> None:
    _, mine = await session(api)
    _, theirs = await session(api, "eve@example.com")
    key_id = (await api.post("/api/v1/keys", headers=bearer(mine))).json()["key_id"]
    response = await api.delete(f"/api/v1/keys/{key_id}", headers=bearer(theirs))
    assert_problem(response, 404, "not_found")


async def test_webhook_secret_read_and_rotate(api: httpx.AsyncClient) -> None:
    _, token = await session(api)
    first = (await api.get("/api/v1/webhook-secret", headers=bearer(token))).json()["secret"]
    assert first.startswith("whsec_")
    rotated = await api.post("/api/v1/webhook-secret/rotate", headers=bearer(token))
    assert rotated.json()["secret"] not in (first, None)


async def test_balance_and_usage_with_key_or_session(
    api: httpx.AsyncClient, real_billing: BillingHarness
) -> None:
    account_id, token = await session(api)
    key = (await api.post("/api/v1/keys", headers=bearer(token))).json()["key"]
    for amount in (10, 20, 30):
        await real_billing.ledger.grant(account_id, amount, "api", "gift")
    await real_billing.ledger.grant(account_id, 5, "user", "web")
    for credential in (key, token):
        balance = await api.get("/api/v1/balance", headers=bearer(credential))
        assert balance.json() == {"api_credits": 60, "user_credits": 5}
    first = (await api.get("/api/v1/usage?limit=2", headers=bearer(key))).json()
    assert [e["credits"] for e in first["data"]] == [5, 30]
    assert first["data"][0]["wallet"] == "user" and first["data"][0]["job_id"] is None
    second = await api.get(
        "/api/v1/usage", params={"limit": 2, "cursor": first["next_cursor"]}, headers=bearer(key)
    )
    assert [e["credits"] for e in second.json()["data"]] == [20, 10]
    assert second.json()["next_cursor"] is None
    junk = await api.get("/api/v1/usage?cursor=zzz", headers=bearer(key))
    assert assert_problem(junk, 422, "invalid_parameter")["errors"][0]["field"] == "cursor"
    assert_problem(
        await api.get("/api/v1/usage?limit=0", headers=bearer(key)), 422, "invalid_parameter"
    )


async def test_pricing_is_public(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/pricing")
    assert response.status_code == 200
    body = response.json()
    assert body["minimum_seconds"] == 5 and body["maximum_seconds"] == 600
    assert {"resolution": "720p", "credits_per_second": 4} in body["rates"]
    assert body["formula"] == pricing.FORMULA  # billing's own description
    assert body["credit_packs"][0] == {
        "price_usd": 10,
        "credits": 1000,
        "price_per_credit_usd": 0.01,
    }


async def test_a_key_with_a_bad_checksum_never_reaches_auth(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    fake = "sk_abcdefgh1234_" + "A" * 40
    assert_problem(await client.get(JOB, headers=bearer(fake)), 401, "unauthorized")
    assert stack.auth.calls == []


async def test_openapi_documents_the_account_endpoints(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/keys",
        "/api/v1/keys/{key_id}",
        "/api/v1/balance",
        "/api/v1/usage",
        "/api/v1/pricing",
        "/api/v1/estimate",
        "/api/v1/webhook-secret",
        "/api/v1/webhook-secret/rotate",
    ):
        assert path in paths, path
