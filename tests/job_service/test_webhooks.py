"""Webhook delivery to a real local HTTP receiver."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from job_service import signing
from job_service.representation import job_proto
from job_service.store import JobStore, Outcome
from job_service.webhooks import RetrySchedule, WebhookSender
from lipsync.jobs.v1 import jobs_pb2

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class _Server(ThreadingHTTPServer):
    # Room for a sweep's concurrent deliveries (the default backlog is 5).
    request_queue_size = 128


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], dict]] = []
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append((dict(self.headers.items()), json.loads(body)))
                receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(204)
    yield r
    r.server.shutdown()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    yield store
    await store.close()


class FakeSecrets:
    def __init__(self, secret: str | None = SECRET) -> None:
        self.value = secret
        self.asked: list[str] = []

    async def secret(self, account_id: str) -> str:
        self.asked.append(account_id)
        if self.value is None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
            )
        return self.value


def sender(
    store: JobStore, allow_private: bool, secrets: FakeSecrets | None = None
) -> WebhookSender:
    render = functools.partial(job_proto, public_url="https://api", signing_key=b"k", ttl_s=60)
    return WebhookSender(
        store, render, timeout_s=5, secrets=secrets or FakeSecrets(), allow_private=allow_private
    )


async def finished_job(store: JobStore, webhook: str) -> str:
    spec = jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="i", audio="a"))
    row, _ = await store.create(
        account_id="acct",
        model="lipsync-image",
        spec=spec.SerializeToString(deterministic=True),
        webhook=webhook,
        idempotency_key="",
        fingerprint="",
    )
    await store.finish(row.id, Outcome(jobs_pb2.JOB_STATUS_FAILED, error="bad audio", credits=0))
    return row.id


async def test_the_terminal_job_object_is_posted(store: JobStore, receiver: Receiver) -> None:
    job_id = await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=True)
    try:
        (row,) = await store.claim_webhooks(webhooks.owner, 3)
        assert await webhooks.deliver(row)
    finally:
        await webhooks.stop()
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == f"msg_{job_id}"
    assert body["id"] == job_id and body["status"] == "failed" and body["error"] == "bad audio"
    assert await store.claim_webhooks("anyone", 3) == []


async def test_a_non_2xx_answer_leaves_the_delivery_due(store: JobStore) -> None:
    failing = Receiver(500)
    try:
        await finished_job(store, failing.url)
        webhooks = sender(store, allow_private=True)
        (row,) = await store.claim_webhooks(webhooks.owner, 3)
        assert not await webhooks.deliver(row)
        await webhooks.stop()
        assert len(await store.claim_webhooks("anyone", 3, now=time.time() + 10)) == 1
    finally:
        failing.server.shutdown()


async def test_private_addresses_are_refused_unless_allowed(
    store: JobStore, receiver: Receiver
) -> None:
    await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=False)
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    assert receiver.requests == []


async def test_the_delivery_is_signed_per_standard_webhooks(
    store: JobStore, receiver: Receiver
) -> None:
    await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=True)
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert await webhooks.deliver(row)
    await webhooks.stop()
    headers, _ = receiver.requests[0]
    body = receiver.bodies[0]
    msg_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    assert headers["webhook-signature"].startswith("v1,")
    assert signing.verify(SECRET, msg_id, timestamp, body, headers["webhook-signature"])
    assert not signing.verify(SECRET, msg_id, timestamp + 1, body, headers["webhook-signature"])
    assert not signing.verify(SECRET, msg_id, timestamp, body + b" ", headers["webhook-signature"])


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification's reference libraries.
    body = b'{"test": 2432232314}'
    assert (
        signing.signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


async def test_a_failed_attempt_is_retried_after_a_growing_delay(store: JobStore) -> None:
    failing = Receiver(500)
    try:
        await finished_job(store, failing.url)
        webhooks = sender(store, allow_private=True)
        (row,) = await store.claim_webhooks(webhooks.owner, 10)
        assert not await webhooks.deliver(row)
        assert await store.claim_webhooks(webhooks.owner, 10) == []
        (again,) = await store.claim_webhooks(webhooks.owner, 10, now=time.time() + 5.5)
        assert again.webhook_attempts == 1
        assert not await webhooks.deliver(again)
        assert await store.claim_webhooks("anyone", 10, now=time.time() + 6) == []
        assert len(await store.claim_webhooks("anyone", 10, now=time.time() + 10.5)) == 1
        await webhooks.stop()
        ids = {headers["webhook-id"] for headers, _ in failing.requests}
        assert len(failing.requests) == 2 and len(ids) == 1
    finally:
        failing.server.shutdown()


async def test_without_a_secret_nothing_is_sent_and_the_delivery_is_retried(
    store: JobStore, receiver: Receiver
) -> None:
    await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=True, secrets=FakeSecrets(None))
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    assert receiver.requests == []
    assert len(await store.claim_webhooks("anyone", 3, now=time.time() + 60)) == 1


def test_schedule_backs_off_to_the_cap_and_covers_a_day() -> None:
    schedule = RetrySchedule()
    assert [schedule.delay(n) for n in (1, 2, 3)] == [5, 10, 20]
    assert schedule.delay(50) == 3600
    total = sum(schedule.delay(n) for n in range(1, schedule.max_attempts))
    assert total >= 24 * 3600
