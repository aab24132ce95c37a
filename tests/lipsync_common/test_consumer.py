"""The pull consumer on a real nats-server: settling, heartbeats, concurrency, stop."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from lipsync_common.consumer import Delivery, PullConsumer, Reject, Retry
from tests.lipsync_common.consumer_helpers import (
    STREAM,
    SUBJECT,
    Recorder,
    config,
    deliveries,
    settled,
)


async def test_a_handled_message_is_acked_once(js: JetStreamContext) -> None:
    handler = Recorder()
    consumer = PullConsumer(js, STREAM, config(), handler, batch=8)
    await consumer.start()
    try:
        ack = await js.publish(SUBJECT, b"hello")
        (delivery,) = await handler.wait_for(1)
        await settled(js)
    finally:
        await consumer.stop()
    assert (delivery.subject, delivery.data, delivery.attempt) == (SUBJECT, b"hello", 1)
    assert delivery.stream_seq == ack.seq and not delivery.last_attempt
    info = await js.consumer_info(STREAM, "test")
    assert info.ack_floor is not None and info.ack_floor.stream_seq == ack.seq
    assert deliveries(info) == 1


async def test_retry_redelivers_after_the_delay(js: JetStreamContext) -> None:
    async def once(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise Retry(0.5)

    handler = Recorder(once)
    consumer = PullConsumer(js, STREAM, config(), handler)
    await consumer.start()
    try:
        await js.publish(SUBJECT, b"again")
        first, second = await handler.wait_for(2)
        await settled(js)
    finally:
        await consumer.stop()
    assert [d.attempt for d in (first, second)] == [1, 2]
    assert second.data == b"again"
    assert handler.times[1] - handler.times[0] >= 0.45


async def test_an_unexpected_error_is_logged_and_retried(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash_once(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise RuntimeError("database went away")

    handler = Recorder(crash_once)
    consumer = PullConsumer(js, STREAM, config(), handler, retry_delay_s=0.1)
    await consumer.start()
    try:
        await js.publish(SUBJECT, b"x")
        await handler.wait_for(2)
        await settled(js)
    finally:
        await consumer.stop()
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "database went away" in str(record.exc_info[1])  # type: ignore[index]


async def test_a_rejected_message_is_terminated_not_redelivered(
    nats: tuple[Client, JetStreamContext],
) -> None:
    nc, js = nats
    terminated = await nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{STREAM}.test")

    async def reject(delivery: Delivery) -> None:
        raise Reject("poison")

    handler = Recorder(reject)
    consumer = PullConsumer(js, STREAM, config(max_deliver=5), handler)
    await consumer.start()
    try:
        ack = await js.publish(SUBJECT, b"poison")
        advisory = json.loads((await terminated.next_msg(timeout=10)).data)
        await settled(js)
    finally:
        await consumer.stop()
    assert advisory["stream_seq"] == ack.seq
    assert [d.attempt for d in handler.deliveries] == [1]
    assert deliveries(await js.consumer_info(STREAM, "test")) == 1


async def test_max_deliver_exhaustion_is_announced(nats: tuple[Client, JetStreamContext]) -> None:
    nc, js = nats
    exhausted = await nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.test")

    async def always_retry(delivery: Delivery) -> None:
        raise Retry(0.05)

    handler = Recorder(always_retry)
    consumer = PullConsumer(js, STREAM, config(max_deliver=3), handler)
    await consumer.start()
    try:
        ack = await js.publish(SUBJECT, b"doomed")
        advisory = json.loads((await exhausted.next_msg(timeout=10)).data)
    finally:
        await consumer.stop()
    assert advisory["stream_seq"] == ack.seq and advisory["deliveries"] == 3
    assert [(d.attempt, d.last_attempt) for d in handler.deliveries] == [
        (1, False),
        (2, False),
        (3, True),
    ]


async def test_heartbeats_keep_a_long_handler_from_redelivery(js: JetStreamContext) -> None:
    async def slow(delivery: Delivery) -> None:
        await asyncio.sleep(3)  # three ack waits

    handler = Recorder(slow)
    consumer = PullConsumer(js, STREAM, config(ack_wait=1.0), handler, heartbeat_s=0.2)
    # Another replica keeps pulling: it would get the message if its ack wait ran out.
    rival = Recorder()
    replica = PullConsumer(js, STREAM, config(ack_wait=1.0), rival, heartbeat_s=0.2)
    await consumer.start()
    try:
        await js.publish(SUBJECT, b"long")
        await handler.wait_for(1)
        await replica.start()
        await settled(js)
    finally:
        await consumer.stop()
        await replica.stop()
    assert [d.attempt for d in handler.deliveries] == [1]
    assert rival.deliveries == []
    assert deliveries(await js.consumer_info(STREAM, "test")) == 1


async def test_messages_waiting_in_a_batch_get_heartbeats_too(js: JetStreamContext) -> None:
    async def slow(delivery: Delivery) -> None:
        await asyncio.sleep(0.8)

    handler = Recorder(slow)
    # Three messages in one pull, handled one at a time: the third waits 1.6 s.
    consumer = PullConsumer(js, STREAM, config(ack_wait=1.0), handler, batch=3, heartbeat_s=0.2)
    rival = Recorder()
    replica = PullConsumer(js, STREAM, config(ack_wait=1.0), rival, heartbeat_s=0.2)
    for n in range(3):
        await js.publish(SUBJECT, str(n).encode())
    await consumer.start()
    try:
        await handler.wait_for(1)
        await replica.start()
        await handler.wait_for(3)
        await settled(js)
    finally:
        await consumer.stop()
        await replica.stop()
    assert [(d.data, d.attempt) for d in handler.deliveries] == [(b"0", 1), (b"1", 1), (b"2", 1)]
    assert rival.deliveries == []


async def test_concurrency_runs_that_many_handlers_at_once_and_no_more(
    js: JetStreamContext,
) -> None:
    release = asyncio.Event()
    busy = 0
    peak = 0

    async def hold(delivery: Delivery) -> None:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await release.wait()
        busy -= 1

    handler = Recorder(hold)
    consumer = PullConsumer(js, STREAM, config(), handler, concurrency=3)
    for n in range(5):
        await js.publish(SUBJECT, str(n).encode())
    await consumer.start()
    try:
        await handler.wait_for(3)
        # A fourth would have started by now if the limit were not held.
        await asyncio.sleep(0.5)
        assert busy == 3
        assert (await js.consumer_info(STREAM, "test")).num_pending == 2
        release.set()
        await handler.wait_for(5)
        await settled(js)
    finally:
        release.set()
        await consumer.stop()
    assert peak == 3
    assert sorted(d.data for d in handler.deliveries) == [b"0", b"1", b"2", b"3", b"4"]


async def test_stop_finishes_the_message_in_hand_first(js: JetStreamContext) -> None:
    release = asyncio.Event()
    finished: list[bytes] = []

    async def hold(delivery: Delivery) -> None:
        await release.wait()
        finished.append(delivery.data)

    handler = Recorder(hold)
    consumer = PullConsumer(js, STREAM, config(), handler)
    await consumer.start()
    ack = await js.publish(SUBJECT, b"in hand")
    await handler.wait_for(1)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(1.5)  # longer than the pull in flight
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished == [b"in hand"]
    info = await js.consumer_info(STREAM, "test")
    assert info.num_ack_pending == 0
    assert info.ack_floor is not None and info.ack_floor.stream_seq == ack.seq
    # Stopped means stopped: a later message waits in the stream.
    await js.publish(SUBJECT, b"later")
    await asyncio.sleep(0.3)
    assert (await js.consumer_info(STREAM, "test")).num_pending == 1
