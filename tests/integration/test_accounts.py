"""The self-serve account flow through the real stack, from sign-up to logout."""

from __future__ import annotations

import time
import uuid

import pytest

from job_service.signing import verify
from tests.integration.conftest import Platform
from tests.integration.harness import bearer, ctl, wait_until_finished

pytestmark = pytest.mark.integration

PASSWORD = "a long enough password"


def usage_kinds(platform: Platform, key: str, job_id: str, timeout_s: float = 10) -> list[str]:
    """The kinds of the job's ledger entries, once billing has settled it."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = platform.client.get("/api/v1/usage", headers=bearer(key))
        assert response.status_code == 200, response.text
        kinds = [e["kind"] for e in response.json()["data"] if e["job_id"] == job_id]
        if "capture" in kinds or time.monotonic() > deadline:
            return kinds
        time.sleep(0.1)


def test_signup_to_signed_webhook_to_logout(platform: Platform) -> None:
    client, media = platform.client, platform.media
    email = f"self-serve-{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": PASSWORD}

    signed_up = client.post("/api/v1/auth/signup", json=credentials)
    assert signed_up.status_code == 201, signed_up.text
    account_id = signed_up.json()["account_id"]
    assert client.post("/api/v1/auth/signup", json=credentials).status_code == 409
    login = client.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    token = login.json()["token"]

    created = client.post("/api/v1/keys", json={"name": "laptop"}, headers=bearer(token))
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    ctl(
        platform.env,
        "credits",
        "grant",
        "--account",
        account_id,
        "--amount",
        "100",
        "--reason",
        "trial",
    )
    balance = client.get("/api/v1/balance", headers=bearer(key)).json()
    assert balance == {"api_credits": 100, "user_credits": 0}

    secret = client.get("/api/v1/webhook-secret", headers=bearer(token)).json()["secret"]
    assert secret.startswith("whsec_")

    form = {"image": f"{media.url}/portrait.jpg", "audio": f"{media.url}/speech-3s.wav"}
    estimate = client.post(
        "/api/v1/estimate",
        json={"model": "lipsync-image", "formState": form},
        headers=bearer(key),
    )
    assert estimate.status_code == 200, estimate.text
    assert estimate.json() == {"billed_seconds": 5, "credits": 10}

    submitted = client.post(
        "/api/v1/lipsync-image",
        json={"webhook": f"{media.url}/webhook", "formState": form},
        headers=bearer(key),
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    job = wait_until_finished(client, job_id, key, timeout_s=120)
    assert job["status"] == "completed", job["error"]
    assert job["credits"] == 10

    kinds = usage_kinds(platform, key, job_id)
    assert kinds == ["capture", "reserve"]
    entry = next(
        e
        for e in client.get("/api/v1/usage", headers=bearer(key)).json()["data"]
        if e["job_id"] == job_id and e["kind"] == "capture"
    )
    assert (entry["model"], entry["billed_seconds"], entry["resolution"], entry["credits"]) == (
        "lipsync-image",
        5,
        "480p",
        10,
    )
    assert client.get("/api/v1/balance", headers=bearer(token)).json()["api_credits"] == 90

    headers, payload = media.wait_for_webhook(job_id, timeout_s=30)
    assert payload["credits"] == 10
    body = media.webhook_bodies[job_id]
    assert verify(
        secret,
        headers["webhook-id"],
        int(headers["webhook-timestamp"]),
        body,
        headers["webhook-signature"],
    )

    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    assert client.get("/api/v1/keys", headers=bearer(token)).status_code == 401
    # The key outlives the session that created it.
    assert client.get("/api/v1/balance", headers=bearer(key)).status_code == 200


def test_rate_limit_answers_429_with_retry_after(platform: Platform) -> None:
    _, key = platform.account(credits=0)
    missing = f"/api/v1/jobs/{uuid.uuid4()}"
    for _ in range(2000):
        response = platform.client.get(missing, headers=bearer(key))
        if response.status_code == 429:
            break
        assert response.status_code == 404
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    # Another key is not affected.
    _, other = platform.account(credits=0)
    assert platform.client.get(missing, headers=bearer(other)).status_code == 404
