"""A job whose worker keeps crashing is failed, not left in `processing`."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from job_service.reaper import GAVE_UP, Reaper
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.jetstream import (
    EVENTS_STREAM,
    JOBS_STREAM,
    JOBS_SUBJECT,
    WORKER_CONSUMER,
    WORKER_MAX_DELIVER,
    connect,
    ensure_streams,
    events_subject,
)


async def test_exhausted_deliveries_become_a_failed_event(nats_server: str) -> None:
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    # The worker consumer as production declares it, but with a short ack wait
    # so that "crashed" deliveries expire within the test.
    await js.add_consumer(
        JOBS_STREAM,
        ConsumerConfig(
            durable_name=WORKER_CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=0.3,
            max_deliver=WORKER_MAX_DELIVER,
            filter_subject=JOBS_SUBJECT,
        ),
    )
    reaper = Reaper(nc, js)
    await reaper.start()
    try:
        request = events_pb2.JobRequested(
            job_id="job-1", account_id="acct", model=jobs_pb2.MODEL_LIPSYNC_IMAGE
        )
        await js.publish(
            JOBS_SUBJECT, request.SerializeToString(), headers={"Nats-Msg-Id": "job-1"}
        )
        events = await js.subscribe(events_subject("job-1"), stream=EVENTS_STREAM)
        worker = await js.pull_subscribe_bind(WORKER_CONSUMER, stream=JOBS_STREAM)
        for _ in range(WORKER_MAX_DELIVER):
            # Take the job and "crash": never ack, let the ack wait expire.
            (msg,) = await worker.fetch(1, timeout=5)
            assert msg.metadata.num_delivered <= WORKER_MAX_DELIVER
        # The server gives up on the message when the next pull arrives, as it
        # does at once in production, where idle workers are always pulling.
        with pytest.raises(TimeoutError):
            await worker.fetch(1, timeout=1)

        delivered = await events.next_msg(timeout=10)
        event = events_pb2.JobEvent()
        event.ParseFromString(delivered.data)
        assert event.job_id == "job-1" and event.failed.error == GAVE_UP
        # The dead message is removed from the work queue.
        await asyncio.sleep(0.2)
        assert (await js.stream_info(JOBS_STREAM)).state.messages == 0
    finally:
        await reaper.stop()
        await nc.close()
