"""Worker events on a real JetStream move jobs to their terminal state once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from job_service.events import EventConsumer
from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.jetstream import (
    EVENTS_STREAM,
    JOB_SERVICE_EVENTS,
    connect,
    ensure_streams,
    events_subject,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    yield store
    await store.close()


async def new_job(store: JobStore) -> JobRow:
    spec = jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="i", audio="a"))
    row, _ = await store.create(
        account_id="acct",
        model="lipsync-image",
        spec=spec.SerializeToString(deterministic=True),
        webhook="",
        idempotency_key="",
        fingerprint="",
    )
    return row


async def publish(js: object, event: events_pb2.JobEvent, msg_id: str) -> None:
    await js.publish(  # type: ignore[attr-defined]
        events_subject(event.job_id), event.SerializeToString(), headers={"Nats-Msg-Id": msg_id}
    )


class Finished:
    """Collects finished jobs and lets a test await the first one."""

    def __init__(self) -> None:
        self.rows: list[JobRow] = []
        self.event = asyncio.Event()

    async def __call__(self, row: JobRow) -> None:
        self.rows.append(row)
        self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), 10)


async def test_completed_event_finishes_the_job_once(nats_server: str, store: JobStore) -> None:
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    finished = Finished()
    consumer = EventConsumer(js, store, on_finished=finished)
    await consumer.start()
    try:
        row = await new_job(store)
        started = events_pb2.JobEvent(
            job_id=row.id, account_id="acct", started=events_pb2.JobStarted(attempt=1)
        )
        done = events_pb2.JobEvent(
            job_id=row.id,
            account_id="acct",
            completed=events_pb2.JobCompleted(
                output_key=f"{row.id}.mp4", execution_time_ms=900, credits=10, seed=5
            ),
        )
        late_failure = events_pb2.JobEvent(
            job_id=row.id, account_id="acct", failed=events_pb2.JobFailed(error="late")
        )
        await publish(js, started, "a")
        await publish(js, done, "b")
        # A duplicate with another message id, as a redelivered worker would send.
        await publish(js, done, "c")
        await publish(js, late_failure, "d")

        await finished.wait()
        await asyncio.sleep(0.3)  # let the duplicates arrive too
        job = await store.get(row.id)
        assert job is not None
        assert job.status == jobs_pb2.JOB_STATUS_COMPLETED
        assert (job.credits, job.seed, job.execution_time_ms) == (10, 5, 900)
        assert [r.id for r in finished.rows] == [row.id]
    finally:
        await consumer.stop()
        await nc.close()


async def test_failed_event_records_the_message_and_no_charge(
    nats_server: str, store: JobStore
) -> None:
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    finished = Finished()
    consumer = EventConsumer(js, store, on_finished=finished)
    await consumer.start()
    try:
        row = await new_job(store)
        event = events_pb2.JobEvent(
            job_id=row.id,
            account_id="acct",
            failed=events_pb2.JobFailed(error="no face found in image"),
        )
        await publish(js, event, "x")

        await finished.wait()
        job = await store.get(row.id)
        assert job is not None and job.error == "no face found in image" and job.credits == 0
    finally:
        await consumer.stop()
        await nc.close()


async def test_an_undecodable_event_is_dropped_and_the_next_one_applied(
    nats_server: str, store: JobStore
) -> None:
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    finished = Finished()
    consumer = EventConsumer(js, store, on_finished=finished)
    await consumer.start()
    try:
        row = await new_job(store)
        await js.publish(events_subject(row.id), b"\xff\xff not protobuf")
        event = events_pb2.JobEvent(
            job_id=row.id, account_id="acct", failed=events_pb2.JobFailed(error="boom")
        )
        await publish(js, event, "y")

        await finished.wait()
        assert [r.id for r in finished.rows] == [row.id]
        # Two messages, two deliveries: the garbage was terminated, not retried.
        info = await js.consumer_info(EVENTS_STREAM, JOB_SERVICE_EVENTS)
        assert info.delivered is not None and info.delivered.consumer_seq == 2
    finally:
        await consumer.stop()
        await nc.close()
