"""lipsync_client.webhooks.verify against the reference `standardwebhooks` package and our API.

Both directions with the reference: what it signs, we accept; what we sign,
it accepts; and every way a delivery can be wrong is refused by both. Then a
real webhook of a finished job, as job_service signed it, with the secret
the account reads over REST.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
from lipsync_client import Client, WebhookVerificationError, webhooks

from tests.sdk.conftest import SdkStack

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
PAYLOAD = json.dumps({"id": "job-1", "status": "completed", "output": "https://x/y.mp4"}).encode()


def reference_headers(msg_id: str, when: float, payload: bytes, secret: str = SECRET) -> dict:
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(when, tz=UTC), payload.decode()
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when)),
        "webhook-signature": signature,
    }


def test_accepts_what_the_reference_signs() -> None:
    headers = reference_headers("msg_1", time.time(), PAYLOAD)
    assert webhooks.verify(PAYLOAD, headers, SECRET) == json.loads(PAYLOAD)
    # Header names in any case, the payload as str, the secret as raw bytes.
    upper = {name.upper(): value for name, value in headers.items()}
    raw_key = base64.b64decode(SECRET.removeprefix("whsec_"))
    assert webhooks.verify(PAYLOAD.decode(), upper, raw_key)["status"] == "completed"


def test_the_reference_accepts_what_we_sign() -> None:
    now = int(time.time())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.sign(SECRET, "msg_2", now, PAYLOAD),
    }
    assert standardwebhooks.Webhook(SECRET).verify(PAYLOAD, headers) == json.loads(PAYLOAD)


def test_any_of_several_signatures_is_enough() -> None:
    headers = reference_headers("msg_3", time.time(), PAYLOAD)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    wrong = reference_headers("msg_3", time.time(), PAYLOAD, other)["webhook-signature"]
    # During a secret rotation: an old one, a future version, and the matching one.
    headers["webhook-signature"] = f"{wrong} v2,abcd {headers['webhook-signature']}"
    assert webhooks.verify(PAYLOAD, headers, SECRET)["id"] == "job-1"
    standardwebhooks.Webhook(SECRET).verify(PAYLOAD, headers)
    # A header of only wrong ones is refused.
    headers["webhook-signature"] = wrong
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        webhooks.verify(PAYLOAD, headers, SECRET)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("tampered body", "no webhook-signature matches"),
        ("other id", "no webhook-signature matches"),
        ("wrong secret", "no webhook-signature matches"),
        ("six minutes old", "tolerance"),
        ("six minutes ahead", "tolerance"),
        ("no signature", "missing header webhook-signature"),
        ("timestamp not a number", "not an integer"),
    ],
)
def test_refuses_a_bad_delivery_as_the_reference_does(case: str, message: str) -> None:
    when = time.time()
    if case == "six minutes old":
        when -= 360
    if case == "six minutes ahead":
        when += 360
    headers = reference_headers("msg_4", when, PAYLOAD)
    payload, secret = PAYLOAD, SECRET
    if case == "tampered body":
        payload = PAYLOAD.replace(b"completed", b"failed")
    if case == "other id":
        headers["webhook-id"] = "msg_5"
    if case == "wrong secret":
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    if case == "no signature":
        del headers["webhook-signature"]
    if case == "timestamp not a number":
        headers["webhook-timestamp"] = "soon"
    with pytest.raises(WebhookVerificationError, match=message):
        webhooks.verify(payload, headers, secret)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(payload, headers)


def test_tolerance_is_five_minutes_either_way() -> None:
    now = time.time()
    headers = reference_headers("msg_6", now - 290, PAYLOAD)
    assert webhooks.verify(PAYLOAD, headers, SECRET, now=now)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(PAYLOAD, headers, SECRET, now=now + 20)


@pytest.mark.integration
def test_a_real_webhook_of_the_stack_verifies(sdk_stack: SdkStack) -> None:
    account = sdk_stack.signed_up_account(credits=50)
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        job = client.lipsync_image(
            sdk_stack.url("portrait.jpg"),
            sdk_stack.url("speech-3s.wav"),
            webhook=sdk_stack.url("webhook"),
        ).wait(timeout=120)
    assert job.status == "completed", job.error
    headers, _ = sdk_stack.media.wait_for_webhook(job.id, timeout_s=30)
    body = sdk_stack.media.webhook_bodies[job.id]

    payload = webhooks.verify(body, headers, account.webhook_secret)
    assert payload["id"] == job.id
    assert payload["status"] == "completed"
    assert payload["output"] == job.output
    # The reference agrees, and neither accepts the body under another account's secret.
    assert standardwebhooks.Webhook(account.webhook_secret).verify(body, headers) == payload
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(body, headers, SECRET)
