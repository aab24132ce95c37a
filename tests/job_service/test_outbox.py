"""The outbox over a real JetStream work queue and a real job store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from job_service.outbox import Outbox
from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import events_pb2
from lipsync_common.jetstream import (
    JOBS_STREAM,
    WORKER_CONSUMER,
    connect,
    ensure_streams,
    ensure_worker_consumer,
)
from tests.conftest import NatsProcess
from tests.job_specs import image_spec


@pytest.fixture
async def parts(
    tmp_path: Path, nats_server: str
) -> AsyncIterator[tuple[JobStore, JetStreamContext]]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    await ensure_worker_consumer(js)
    yield store, js
    await nc.close()
    await store.close()


async def new_job(store: JobStore) -> JobRow:
    spec = image_spec().SerializeToString(deterministic=True)
    row, _ = await store.create("acct", "lipsync-image", spec, "", "", "")
    return row


async def queued(js: JetStreamContext) -> list[str]:
    sub = await js.pull_subscribe_bind(WORKER_CONSUMER, stream=JOBS_STREAM)
    try:
        msgs = await sub.fetch(batch=10, timeout=0.5)
    except TimeoutError:  # nats-py raises both its own and the bare asyncio one
        return []
    finally:
        await sub.unsubscribe()
    for msg in msgs:
        await msg.ack()
    return [events_pb2.JobRequested.FromString(msg.data).job_id for msg in msgs]


async def test_published_jobs_are_flagged_in_one_batch(
    parts: tuple[JobStore, JetStreamContext],
) -> None:
    store, js = parts
    outbox = Outbox(store, js, interval_s=60)
    rows = [await new_job(store) for _ in range(3)]
    for row in rows:
        await outbox.publish(row)
    assert sorted(await queued(js)) == sorted(row.id for row in rows)
    # Published but not yet flagged: the outbox pass would publish them again,
    # and JetStream would drop them as duplicates.
    assert len(await store.unpublished(older_than_s=-1)) == 3
    await outbox.flush()
    assert await store.unpublished(older_than_s=-1) == []


async def test_a_job_whose_publish_failed_is_published_by_the_outbox_pass(
    parts: tuple[JobStore, JetStreamContext],
) -> None:
    store, js = parts
    row = await new_job(store)  # stored, never published: as if NATS was down
    outbox = Outbox(store, js, interval_s=0)
    await outbox.publish_pending()
    await outbox.flush()
    assert await queued(js) == [row.id]
    assert await store.unpublished(older_than_s=-1) == []


async def test_a_publish_repeated_after_a_lost_flag_is_dropped_as_a_duplicate(
    parts: tuple[JobStore, JetStreamContext],
) -> None:
    store, js = parts
    row = await new_job(store)
    outbox = Outbox(store, js, interval_s=0)
    await outbox.publish(row)
    # A crash before the flag was written: the next pass publishes it again.
    await Outbox(store, js, interval_s=0).publish_pending()
    assert await queued(js) == [row.id]


async def test_with_nats_down_a_job_is_accepted_at_once_and_published_when_it_is_back(
    tmp_path: Path, restartable_nats: NatsProcess
) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    nc, js = await connect(restartable_nats.url, "test")
    await ensure_streams(js)
    await ensure_worker_consumer(js)
    outbox = Outbox(store, js, interval_s=0.2)
    outbox.start()
    try:
        await asyncio.to_thread(restartable_nats.stop)
        row = await new_job(store)
        started = time.monotonic()
        outbox.enqueue(row)  # what CreateJob does once the job is stored
        assert time.monotonic() - started < 1  # no wait on NATS (its reconnects take seconds)
        await asyncio.sleep(0.5)
        assert [r.id for r in await store.unpublished(older_than_s=-1)] == [row.id]
        await asyncio.to_thread(restartable_nats.start)
        async with asyncio.timeout(30):
            while await store.unpublished(older_than_s=-1):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert await queued(js) == [row.id]
    finally:
        await outbox.stop()
        await nc.close()
        await store.close()
