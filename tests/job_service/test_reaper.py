"""A job whose worker keeps crashing is failed, not left in `processing`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from job_service.reaper import GAVE_UP, Reaper
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.jetstream import (
    ADVISORIES_STREAM,
    EVENTS_STREAM,
    JOBS_STREAM,
    JOBS_SUBJECT,
    REAPER_CONSUMER,
    WORKER_MAX_DELIVER,
    connect,
    ensure_streams,
    events_subject,
    message_id,
    worker_consumer_config,
)


@pytest.fixture
async def js(nats_server: str) -> AsyncIterator[JetStreamContext]:
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    # The worker consumer as production declares it, but with a short ack wait
    # so that "crashed" deliveries expire within the test.
    config = worker_consumer_config()
    config.ack_wait = 0.3
    await js.add_consumer(JOBS_STREAM, config)
    yield js
    await nc.close()


async def crash_every_delivery(js: JetStreamContext, job_id: str) -> None:
    """Queue a job and take it WORKER_MAX_DELIVER times without ever acking."""
    spec = jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="i", audio="a"))
    request = events_pb2.JobRequested(job_id=job_id, account_id="acct", spec=spec)
    await js.publish(
        JOBS_SUBJECT, request.SerializeToString(), headers={"Nats-Msg-Id": message_id(job_id)}
    )
    worker = await js.pull_subscribe_bind(worker_consumer_config().durable_name, JOBS_STREAM)
    for _ in range(WORKER_MAX_DELIVER):
        (msg,) = await worker.fetch(1, timeout=5)
        assert msg.metadata.num_delivered <= WORKER_MAX_DELIVER
    # The server gives up on the message when the next pull arrives, as it
    # does at once in production, where idle workers are always pulling.
    with pytest.raises(TimeoutError):
        await worker.fetch(1, timeout=1)
    await worker.unsubscribe()


async def failed_event(js: JetStreamContext, job_id: str) -> events_pb2.JobEvent:
    events = await js.subscribe(events_subject(job_id), stream=EVENTS_STREAM)
    try:
        return events_pb2.JobEvent.FromString((await events.next_msg(timeout=10)).data)
    finally:
        await events.unsubscribe()


async def queue_emptied(js: JetStreamContext) -> None:
    async with asyncio.timeout(10):
        while (await js.stream_info(JOBS_STREAM)).state.messages:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def advisory_kept(js: JetStreamContext) -> None:
    async with asyncio.timeout(10):
        while not (await js.stream_info(ADVISORIES_STREAM)).state.messages:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def advisories_acknowledged(js: JetStreamContext) -> None:
    async with asyncio.timeout(10):
        while True:
            info = await js.consumer_info(ADVISORIES_STREAM, REAPER_CONSUMER)
            if not (info.num_pending or info.num_ack_pending):
                return
            await asyncio.sleep(0.05)


async def test_exhausted_deliveries_become_a_failed_event(js: JetStreamContext) -> None:
    reaper = Reaper(js)
    await reaper.start()
    try:
        await crash_every_delivery(js, "job-1")
        event = await failed_event(js, "job-1")
        assert event.job_id == "job-1" and event.account_id == "acct"
        assert event.failed.error == GAVE_UP
        # The dead message is removed from the work queue.
        await queue_emptied(js)
    finally:
        await reaper.stop()


async def test_an_advisory_sent_while_the_reaper_was_down_is_handled_when_it_starts(
    js: JetStreamContext,
) -> None:
    await crash_every_delivery(js, "job-2")
    await advisory_kept(js)
    assert (await js.stream_info(JOBS_STREAM)).state.messages == 1

    reaper = Reaper(js)
    await reaper.start()
    try:
        event = await failed_event(js, "job-2")
        assert event.failed.error == GAVE_UP
        await queue_emptied(js)
    finally:
        await reaper.stop()
    await advisories_acknowledged(js)
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 1


async def test_an_advisory_for_a_job_already_reaped_is_acknowledged(js: JetStreamContext) -> None:
    await crash_every_delivery(js, "job-3")
    await advisory_kept(js)
    # A replica reaped it and crashed before acknowledging the advisory.
    seq = (await js.stream_info(JOBS_STREAM)).state.first_seq
    await js.delete_msg(JOBS_STREAM, seq)

    reaper = Reaper(js)
    await reaper.start()
    try:
        await advisories_acknowledged(js)
    finally:
        await reaper.stop()
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 0
