"""What a client sees when something is wrong: clear errors, nothing charged."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import Platform
from tests.integration.harness import bearer, ctl, wait_until_finished

pytestmark = pytest.mark.integration


def image_body(platform: Platform, image: str, audio: str) -> dict:
    return {
        "formState": {
            "image": f"{platform.media.url}/{image}",
            "audio": f"{platform.media.url}/{audio}",
        }
    }


def assert_unauthorized(response: object) -> dict:
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    return response.json()  # type: ignore[attr-defined, no-any-return]


def test_bad_and_revoked_keys_get_the_same_401(platform: Platform) -> None:
    _, key = platform.account(credits=0)
    body = image_body(platform, "portrait.jpg", "speech-3s.wav")
    url = "/api/v1/lipsync-image"
    missing = assert_unauthorized(platform.client.post(url, json=body))
    malformed = assert_unauthorized(platform.client.post(url, json=body, headers=bearer("nope")))
    unknown = assert_unauthorized(
        platform.client.post(url, json=body, headers=bearer("sk_abcdefgh1234_" + "A" * 40))
    )
    assert missing["detail"] == malformed["detail"] == unknown["detail"]

    key_id = key.split("_")[1]
    assert platform.client.get("/api/v1/jobs/x", headers=bearer(key)).status_code == 404
    ctl(platform.env, "key", "revoke", "--key-id", key_id)
    time.sleep(1.0)  # the contract's bound on how long a revoked key may still work
    revoked = assert_unauthorized(platform.client.post(url, json=body, headers=bearer(key)))
    assert revoked["detail"] == unknown["detail"]


def test_missing_field_is_a_422_naming_it(platform: Platform) -> None:
    _, key = platform.account(credits=0)
    response = platform.client.post(
        "/api/v1/lipsync-image",
        json={"formState": {"image": f"{platform.media.url}/portrait.jpg", "seed": "x"}},
        headers=bearer(key),
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"formState.audio", "formState.seed"} <= fields


def test_balance_below_the_minimum_is_a_402(platform: Platform) -> None:
    _, key = platform.account(credits=9)
    response = platform.client.post(
        "/api/v1/lipsync-image",
        json=image_body(platform, "portrait.jpg", "speech-3s.wav"),
        headers=bearer(key),
    )
    assert response.status_code == 402
    assert response.json()["detail"] == "insufficient credits: need 10, have 9"


@pytest.mark.parametrize(
    ("image", "audio", "message"),
    [
        ("portrait.jpg", "garbage.mp3", "audio could not be decoded"),
        ("no-face.png", "speech-3s.wav", "no face found in image"),
        ("portrait.jpg", "missing.wav", "audio could not be downloaded"),
    ],
)
def test_bad_media_fails_the_job_and_charges_nothing(
    platform: Platform, image: str, audio: str, message: str
) -> None:
    account_id, key = platform.account(credits=50)
    response = platform.client.post(
        "/api/v1/lipsync-image", json=image_body(platform, image, audio), headers=bearer(key)
    )
    assert response.status_code == 202
    job = wait_until_finished(platform.client, response.json()["id"], key, timeout_s=60)
    assert job["status"] == "failed"
    assert message in job["error"]
    assert job["output"] is None and job["credits"] == 0
    assert platform.settled_balance(account_id, expected=50) == 50
