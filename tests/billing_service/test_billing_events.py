from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from billing_service.events import EventConsumer, handle_event
from billing_service.ledger import Ledger, SettleResult
from billing_service.store import Balance
from lipsync.jobs.v1 import events_pb2
from lipsync_common import jetstream
from lipsync_common.consumer import Delivery, Reject

ACCOUNT = "acct-1"


def completed(job_id: str) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        job_id=job_id,
        account_id=ACCOUNT,
        completed=events_pb2.JobCompleted(output_key="out.mp4", credits=20, billed_seconds=10),
    )


def failed(job_id: str) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        job_id=job_id, account_id=ACCOUNT, failed=events_pb2.JobFailed(error="no face found")
    )


def delivery(data: bytes) -> Delivery:
    return Delivery(
        subject=jetstream.events_subject("job-1"),
        data=data,
        attempt=1,
        max_deliver=None,
        stream_seq=1,
    )


async def reserved_job(ledger: Ledger) -> str:
    job_id = uuid.uuid4().hex
    await ledger.grant(ACCOUNT, 100, "api", "test")
    result = await ledger.reserve(job_id, ACCOUNT, credits=20, billed_seconds=10)
    assert result.written
    return job_id


class FlakyLedger:
    """The real ledger, except that its first capture fails like a lost database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.failures = 0

    async def capture(self, job_id: str, account_id: str = "") -> SettleResult:
        if not self.failures:
            self.failures += 1
            raise sqlite3.OperationalError("disk I/O error")
        return await self.ledger.capture(job_id, account_id)


@pytest.fixture
async def js(nats_server: str) -> AsyncIterator[JetStreamContext]:
    """The service's shared connection, which the consumer and the test publish through."""
    nc, js = await jetstream.connect(nats_server, "billing-service")
    await jetstream.ensure_streams(js)
    yield js
    await nc.close()


@pytest.fixture
async def consumer(js: JetStreamContext, ledger: Ledger) -> AsyncIterator[JetStreamContext]:
    """The consumer running against real JetStream; yields the context to publish on."""
    events = EventConsumer(js, ledger)
    await events.start()
    try:
        yield js
    finally:
        await events.stop()


async def publish(js: JetStreamContext, event: events_pb2.JobEvent, msg_id: str) -> int:
    ack = await js.publish(
        jetstream.events_subject(event.job_id),
        event.SerializeToString(),
        headers={"Nats-Msg-Id": msg_id},
    )
    return int(ack.seq)


async def wait_acknowledged(js: JetStreamContext, seq: int, timeout_s: float = 10.0) -> None:
    """Until billing's consumer has acknowledged every message up to `seq`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = await js.consumer_info(jetstream.EVENTS_STREAM, jetstream.BILLING_SERVICE_EVENTS)
        if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= seq:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"billing did not acknowledge message {seq} in {timeout_s} s")


async def test_completed_event_captures_exactly_once(
    consumer: JetStreamContext, ledger: Ledger
) -> None:
    job_id = await reserved_job(ledger)
    await publish(consumer, completed(job_id), f"{job_id}:completed")
    # The same event again under another message id, so JetStream keeps both.
    last = await publish(consumer, completed(job_id), f"{job_id}:completed:retry")
    await wait_acknowledged(consumer, last)

    captures = [e for e in await ledger.entries(ACCOUNT) if e.kind == "capture"]
    assert len(captures) == 1
    assert captures[0].job_id == job_id
    assert captures[0].amount == 20
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)


async def test_failed_event_releases_the_reservation(
    consumer: JetStreamContext, ledger: Ledger
) -> None:
    job_id = await reserved_job(ledger)
    started = events_pb2.JobEvent(
        job_id=job_id, account_id=ACCOUNT, started=events_pb2.JobStarted(worker="w1", attempt=1)
    )
    await publish(consumer, started, f"{job_id}:started")
    last = await publish(consumer, failed(job_id), f"{job_id}:failed")
    await wait_acknowledged(consumer, last)

    kinds = [e.kind for e in await ledger.entries(ACCOUNT)]
    assert kinds == ["grant", "reserve", "release"]
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)


async def test_canceled_event_releases_and_a_later_completed_charges_nothing(
    consumer: JetStreamContext, ledger: Ledger
) -> None:
    job_id = await reserved_job(ledger)
    canceled = events_pb2.JobEvent(
        job_id=job_id, account_id=ACCOUNT, canceled=events_pb2.JobCanceled(by="api")
    )
    await publish(consumer, canceled, f"{job_id}:canceled")
    # The worker finished the render just after the cancel was stored.
    last = await publish(consumer, completed(job_id), f"{job_id}:completed")
    await wait_acknowledged(consumer, last)

    entries = await ledger.entries(ACCOUNT)
    assert [e.kind for e in entries] == ["grant", "reserve", "release"]
    assert entries[-1].reason == "job canceled"
    assert await ledger.balance(ACCOUNT) == Balance(100, 0, 0)


async def test_undecodable_event_is_terminated(consumer: JetStreamContext, ledger: Ledger) -> None:
    job_id = await reserved_job(ledger)
    await consumer.publish(jetstream.events_subject(job_id), b"\xff\xff not protobuf")
    last = await publish(consumer, completed(job_id), f"{job_id}:completed")
    await wait_acknowledged(consumer, last)
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)


async def test_handler_rejects_garbage_and_ignores_started(ledger: Ledger) -> None:
    with pytest.raises(Reject):
        await handle_event(ledger, delivery(b"\xff\xff not protobuf"))

    no_job = events_pb2.JobEvent(failed=events_pb2.JobFailed()).SerializeToString()
    with pytest.raises(Reject):
        await handle_event(ledger, delivery(no_job))

    started = events_pb2.JobEvent(job_id="job-1", started=events_pb2.JobStarted())
    await handle_event(ledger, delivery(started.SerializeToString()))
    assert await ledger.entries(ACCOUNT) == []


async def test_a_database_error_is_retried_until_the_job_settles(
    js: JetStreamContext, ledger: Ledger
) -> None:
    flaky = FlakyLedger(ledger)
    events = EventConsumer(js, flaky)  # type: ignore[arg-type]
    await events.start()
    try:
        job_id = await reserved_job(ledger)
        last = await publish(js, completed(job_id), f"{job_id}:completed")
        await wait_acknowledged(js, last)
    finally:
        await events.stop()
    assert flaky.failures == 1
    info = await js.consumer_info(jetstream.EVENTS_STREAM, jetstream.BILLING_SERVICE_EVENTS)
    # Delivered again after the failure, then acknowledged.
    assert info.delivered is not None and info.delivered.consumer_seq == 2
    assert info.num_ack_pending == 0
    assert await ledger.balance(ACCOUNT) == Balance(80, 0, 0)
