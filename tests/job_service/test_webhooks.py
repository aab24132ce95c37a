"""Webhook delivery to a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from job_service import signing
from job_service import store as job_store
from job_service.representation import job_proto
from job_service.store import JobRow, JobStore, Outcome
from job_service.webhooks import RetrySchedule, WebhookSender, retry_after_s
from lipsync.jobs.v1 import jobs_pb2

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class _Server(ThreadingHTTPServer):
    # Room for a sweep's concurrent deliveries (the default backlog is 5).
    request_queue_size = 128


class Receiver:
    """Answers every POST with `status` and `headers`; with `trickle`, then sends
    a body of that many bytes, one a second."""

    def __init__(
        self, status: int, headers: dict[str, str] | None = None, trickle: int = 0
    ) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], dict]] = []
        self.bodies: list[bytes] = []
        # Requests whose answer is still being sent.
        self.answering = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append((dict(self.headers.items()), json.loads(body)))
                receiver.bodies.append(body)
                receiver.answering += 1
                try:
                    self.send_response(receiver.status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    if trickle:
                        self.send_header("content-length", str(trickle))
                    self.end_headers()
                    for _ in range(trickle):
                        time.sleep(1)
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    pass  # the sender hung up at its deadline
                finally:
                    receiver.answering -= 1

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


async def delivery_state(store: JobStore, job_id: str) -> dict[str, Any]:
    jobs = job_store.jobs
    query = select(
        jobs.c.webhook_attempts,
        jobs.c.webhook_next_attempt_at,
        jobs.c.webhook_gave_up_at,
        jobs.c.webhook_last_error,
        jobs.c.webhook_lease_owner,
        jobs.c.webhook_delivered_at,
    ).where(jobs.c.id == job_id)
    row = await store.db.run(lambda conn: conn.execute(query).one())
    return dict(row._mapping)


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float) -> float:
    """Seconds until `condition` holds; fails past `timeout_s`."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < timeout_s, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


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


RENDER = functools.partial(job_proto, public_url="https://api", signing_key=b"k", ttl_s=60)


def sender(
    store: JobStore,
    allow_private: bool,
    secrets: FakeSecrets | None = None,
    timeout_s: float = 5,
    render: Callable[[JobRow], jobs_pb2.Job] = RENDER,
) -> WebhookSender:
    return WebhookSender(
        store,
        render,
        timeout_s=timeout_s,
        secrets=secrets or FakeSecrets(),
        allow_private=allow_private,
    )


async def finished_job(store: JobStore, webhook: str, account_id: str = "acct") -> str:
    spec = jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="i", audio="a"))
    row, _ = await store.create(
        account_id=account_id,
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


async def test_a_refused_address_stops_delivery_with_the_reason(
    store: JobStore, receiver: Receiver
) -> None:
    job_id = await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=False)
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    assert receiver.requests == []
    state = await delivery_state(store, job_id)
    assert state["webhook_gave_up_at"] is not None
    assert "private or local address" in state["webhook_last_error"]
    assert await store.claim_webhooks("anyone", 3, now=time.time() + 10**6) == []


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
    shortest = sum(schedule.delay(n) * 0.9 for n in range(1, schedule.max_attempts))
    assert shortest >= 24 * 3600
    delays = [schedule.jittered_delay(3) for _ in range(200)]
    assert all(18 <= d <= 20 for d in delays) and len(set(delays)) > 1


def test_retry_after_reads_seconds_and_http_dates_within_bounds() -> None:
    now = time.time()
    assert retry_after_s("120", now) == 120
    assert retry_after_s(email.utils.formatdate(now + 300, usegmt=True), now) == pytest.approx(
        300, abs=1
    )
    assert retry_after_s("86400", now) == 3600
    assert retry_after_s("0", now) == 1
    assert retry_after_s(email.utils.formatdate(now - 60, usegmt=True), now) == 1
    assert retry_after_s("soon", now) is None
    assert retry_after_s("-5", now) is None
    assert retry_after_s(None, now) is None


# Regression: issue 9, item 1. httpx raised InvalidURL, which was not caught:
# the attempt was never recorded and the row came back ahead of everyone's.
async def test_a_url_the_http_client_refuses_is_recorded_and_stops(
    store: JobStore, receiver: Receiver
) -> None:
    # 127.0.0.010: loopback for the resolver (127.0.0.8), invalid for httpx.
    poison = receiver.url.replace("127.0.0.1", "127.0.0.010")
    job_id = await finished_job(store, poison)
    webhooks = sender(store, allow_private=True)
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    state = await delivery_state(store, job_id)
    assert state["webhook_attempts"] == 1 and state["webhook_lease_owner"] is None
    assert state["webhook_gave_up_at"] is not None
    assert "127.0.0.010" in state["webhook_last_error"]
    assert receiver.requests == []


async def test_any_error_of_an_attempt_is_recorded_as_a_failed_attempt(
    store: JobStore, receiver: Receiver
) -> None:
    def broken(row: JobRow) -> jobs_pb2.Job:
        raise RuntimeError("cannot render")

    job_id = await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=True, render=broken)
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    state = await delivery_state(store, job_id)
    assert state["webhook_attempts"] == 1 and state["webhook_lease_owner"] is None
    assert state["webhook_last_error"] == "RuntimeError: cannot render"
    assert state["webhook_gave_up_at"] is None and state["webhook_next_attempt_at"] > time.time()


async def test_poison_rows_do_not_hold_up_a_good_delivery(
    store: JobStore, receiver: Receiver
) -> None:
    poison = receiver.url.replace("127.0.0.1", "127.0.0.010")
    # More than one sweep's worth, all older than the good one.
    poisoned = [await finished_job(store, poison) for _ in range(101)]
    good = await finished_job(store, receiver.url, account_id="other")
    webhooks = sender(store, allow_private=True)
    webhooks.start()
    try:

        async def delivered() -> bool:
            return len(receiver.requests) == 1

        await until(delivered, 3)

        async def all_recorded() -> bool:
            states = [await delivery_state(store, job_id) for job_id in poisoned]
            return all(state["webhook_attempts"] == 1 for state in states)

        # Their account's share of the senders works through them meanwhile.
        await until(all_recorded, 10)
    finally:
        await webhooks.stop()
    assert receiver.requests[0][1]["id"] == good
    for job_id in poisoned:
        state = await delivery_state(store, job_id)
        assert state["webhook_attempts"] == 1 and state["webhook_gave_up_at"] is not None


# Regression: issue 9, item 2. A sweep waited for its whole batch, and the
# timeout was per read: a receiver trickling bytes held every delivery.
async def test_a_slow_receiver_does_not_delay_another_accounts_delivery(
    store: JobStore, receiver: Receiver
) -> None:
    slow = Receiver(200, trickle=30)
    try:
        slow_job = await finished_job(store, slow.url)
        webhooks = sender(store, allow_private=True, timeout_s=3)
        webhooks.start()
        try:

            async def hanging() -> bool:
                return slow.answering == 1

            await until(hanging, 3)
            slow_started = time.monotonic()
            good = await store.get(await finished_job(store, receiver.url, account_id="other"))
            assert good is not None
            webhooks.notify(good)

            async def delivered() -> bool:
                return len(receiver.requests) == 1

            assert await until(delivered, 2) < 2
            assert slow.answering == 1

            async def cut() -> bool:
                return (await delivery_state(store, slow_job))["webhook_attempts"] == 1

            await until(cut, 6)
            assert 2.5 < time.monotonic() - slow_started < 5
        finally:
            await webhooks.stop()
        state = await delivery_state(store, slow_job)
        assert state["webhook_last_error"] == "no complete answer within 3 s"
        assert state["webhook_gave_up_at"] is None
        # The sweeps that ran meanwhile did not claim the row in flight again.
        assert len(slow.requests) == 1
    finally:
        slow.server.shutdown()


async def test_one_accounts_flood_of_hanging_receivers_holds_only_its_share(
    store: JobStore, receiver: Receiver
) -> None:
    """40 due deliveries of one account to a receiver that trickles would fill all 32
    senders for the whole timeout; the account gets its share, and the others go out."""
    slow = Receiver(200, trickle=30)
    try:
        for _ in range(40):
            await finished_job(store, slow.url, account_id="flood")
        webhooks = sender(store, allow_private=True, timeout_s=4)
        webhooks.start()
        try:

            async def hanging() -> bool:
                return slow.answering == webhooks.per_account

            await until(hanging, 3)
            good = await store.get(await finished_job(store, receiver.url, account_id="other"))
            assert good is not None
            webhooks.notify(good)

            async def delivered() -> bool:
                return len(receiver.requests) == 1

            assert await until(delivered, 2) < 2
            # Still only the flood's share in flight, however many of its rows are due.
            assert slow.answering <= webhooks.per_account
        finally:
            await webhooks.stop()
    finally:
        slow.server.shutdown()


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"),
    [
        (503, "120", 120),
        (429, "120", 120),
        # An HTTP date, written when the test runs (see below), 600 s ahead.
        (500, "http-date+600", 600),
        (503, "86400", 3600),
        # Only on a 429 or 5xx; elsewhere the backoff applies.
        (400, "120", 5),
    ],
)
async def test_retry_after_sets_the_next_attempt(
    store: JobStore, status: int, retry_after: str, delay: float
) -> None:
    if retry_after == "http-date+600":
        retry_after = email.utils.formatdate(time.time() + 600, usegmt=True)
    failing = Receiver(status, headers={"retry-after": retry_after})
    try:
        job_id = await finished_job(store, failing.url)
        webhooks = sender(store, allow_private=True)
        (row,) = await store.claim_webhooks(webhooks.owner, 3)
        assert not await webhooks.deliver(row)
        await webhooks.stop()
    finally:
        failing.server.shutdown()
    state = await delivery_state(store, job_id)
    assert state["webhook_next_attempt_at"] - time.time() == pytest.approx(delay, rel=0.1, abs=2)
    assert state["webhook_last_error"] == f"HTTP {status}"


async def test_410_gone_stops_all_further_attempts(store: JobStore) -> None:
    gone = Receiver(410)
    try:
        job_id = await finished_job(store, gone.url)
        webhooks = sender(store, allow_private=True)
        (row,) = await store.claim_webhooks(webhooks.owner, 3)
        assert not await webhooks.deliver(row)
        await webhooks.stop()
    finally:
        gone.server.shutdown()
    state = await delivery_state(store, job_id)
    assert state["webhook_gave_up_at"] is not None and state["webhook_last_error"] == "HTTP 410"
    assert await store.claim_webhooks("anyone", 3, now=time.time() + 10**6) == []


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    store: JobStore, receiver: Receiver
) -> None:
    redirecting = Receiver(302, headers={"location": receiver.url})
    try:
        job_id = await finished_job(store, redirecting.url)
        webhooks = sender(store, allow_private=True)
        (row,) = await store.claim_webhooks(webhooks.owner, 3)
        assert not await webhooks.deliver(row)
        await webhooks.stop()
    finally:
        redirecting.server.shutdown()
    assert len(redirecting.requests) == 1 and receiver.requests == []
    state = await delivery_state(store, job_id)
    assert state["webhook_last_error"] == "HTTP 302" and state["webhook_gave_up_at"] is None
    assert len(await store.claim_webhooks("anyone", 3, now=time.time() + 10)) == 1


def resolving(answers: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver that answers from `answers` and never asks DNS."""

    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    return resolve


# Issue 9, item 7: the sender resolves the receiver once, through the guarded
# transport, and connects to the address it checked, keeping the host name.
async def test_a_named_receiver_is_posted_to_through_the_guarded_transport(
    store: JobStore, receiver: Receiver
) -> None:
    port = receiver.server.server_address[1]
    await finished_job(store, f"http://hooks.test:{port}/hook")
    webhooks = WebhookSender(
        store,
        RENDER,
        timeout_s=5,
        secrets=FakeSecrets(),
        allow_private=True,
        resolver=resolving({"hooks.test": ["127.0.0.1"]}),
    )
    try:
        (row,) = await store.claim_webhooks(webhooks.owner, 3)
        assert await webhooks.deliver(row)
    finally:
        await webhooks.stop()
    headers, _ = receiver.requests[0]
    assert headers["Host"] == f"hooks.test:{port}"


# Regression: issue 9, item 7. `[::7f00:1]` (127.0.0.1, IPv4-compatible) passed
# the guard; a name resolving to it, or to NAT64's form, is refused too.
@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://[::7f00:1]:{port}/hook", {}),
        ("http://hooks.test:{port}/hook", {"hooks.test": ["64:ff9b::7f00:1"]}),
    ],
)
async def test_embedded_loopback_addresses_are_refused(
    store: JobStore, receiver: Receiver, url: str, answers: dict[str, list[str]]
) -> None:
    port = receiver.server.server_address[1]
    job_id = await finished_job(store, url.format(port=port))
    webhooks = WebhookSender(
        store,
        RENDER,
        timeout_s=5,
        secrets=FakeSecrets(),
        allow_private=False,
        resolver=resolving({"::7f00:1": ["::7f00:1"], **answers}),
    )
    (row,) = await store.claim_webhooks(webhooks.owner, 3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    assert receiver.requests == []
    state = await delivery_state(store, job_id)
    assert state["webhook_gave_up_at"] is not None
    assert "private or local address" in state["webhook_last_error"]
