"""job_service's store on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from job_service.store import IdempotencyConflict, JobStore, Outcome
from lipsync.jobs.v1 import jobs_pb2

IMAGE = jobs_pb2.MODEL_LIPSYNC_IMAGE


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    opened = JobStore(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_create_then_get_returns_the_stored_job(store: JobStore) -> None:
    row, new = await store.create("acct", IMAGE, b"\x00form\xff", "", "", "fp")
    assert new and row.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert row.form_state == b"\x00form\xff"
    assert await store.get(row.id) == row
    assert await store.get("no-such-job") is None


async def test_an_idempotency_key_returns_the_first_job_or_conflicts(store: JobStore) -> None:
    first, _ = await store.create("acct", IMAGE, b"form", "", "key-1", "fp")
    again, new = await store.create("acct", IMAGE, b"form", "", "key-1", "fp")
    assert again.id == first.id and not new
    with pytest.raises(IdempotencyConflict):
        await store.create("acct", IMAGE, b"other", "", "key-1", "fp-2")
    other_account, new = await store.create("other", IMAGE, b"form", "", "key-1", "fp")
    assert new and other_account.id != first.id


async def test_simultaneous_requests_with_one_idempotency_key_make_one_job(
    store: JobStore,
) -> None:
    results = await asyncio.gather(
        *(store.create("acct", IMAGE, b"form", "", "key-1", "fp") for _ in range(10))
    )
    assert len({row.id for row, _ in results}) == 1
    assert sum(new for _, new in results) == 1


async def test_a_job_finishes_exactly_once(store: JobStore) -> None:
    row, _ = await store.create("acct", IMAGE, b"form", "", "", "fp")
    done = Outcome(jobs_pb2.JOB_STATUS_COMPLETED, output_key="x.mp4", credits=10, timings={"a": 1})
    finished = await store.finish(row.id, done)
    assert finished is not None and finished.credits == 10 and finished.timings == {"a": 1}
    late_failure = Outcome(jobs_pb2.JOB_STATUS_FAILED, error="boom", credits=0)
    assert await store.finish(row.id, late_failure) is None
    stored = await store.get(row.id)
    assert stored is not None and stored.status == jobs_pb2.JOB_STATUS_COMPLETED


async def test_simultaneous_terminal_events_finish_a_job_once(store: JobStore) -> None:
    row, _ = await store.create("acct", IMAGE, b"form", "", "", "fp")
    outcomes = [
        Outcome(jobs_pb2.JOB_STATUS_COMPLETED, output_key="x.mp4", credits=10),
        Outcome(jobs_pb2.JOB_STATUS_FAILED, error="boom", credits=0),
    ] * 5
    finished = await asyncio.gather(*(store.finish(row.id, o) for o in outcomes))
    assert sum(f is not None for f in finished) == 1


async def test_attempts_only_grow(store: JobStore) -> None:
    row, _ = await store.create("acct", IMAGE, b"form", "", "", "fp")
    for attempt in (2, 1, 3, 3):
        await store.record_attempt(row.id, attempt)
    attempts = await store.db.run(
        lambda conn: conn.execute("SELECT attempts FROM jobs WHERE id = ?", (row.id,)).fetchone()
    )
    assert attempts["attempts"] == 3


async def test_unpublished_jobs_are_found_until_marked(store: JobStore) -> None:
    row, _ = await store.create("acct", IMAGE, b"form", "", "", "fp")
    assert [r.id for r in await store.unpublished(older_than_s=-1)] == [row.id]
    await store.mark_published(row.id)
    assert await store.unpublished(older_than_s=-1) == []


async def test_webhooks_are_due_until_delivered_or_out_of_attempts(store: JobStore) -> None:
    row, _ = await store.create("acct", IMAGE, b"form", "https://hook.example", "", "fp")
    assert await store.webhooks_due(max_attempts=2) == []
    await store.finish(row.id, Outcome(jobs_pb2.JOB_STATUS_FAILED, error="x", credits=0))
    assert [r.id for r in await store.webhooks_due(max_attempts=2)] == [row.id]
    await store.record_webhook_attempt(row.id, delivered=False)
    await store.record_webhook_attempt(row.id, delivered=False)
    assert await store.webhooks_due(max_attempts=2) == []
    assert [r.id for r in await store.webhooks_due(max_attempts=3)] == [row.id]
    await store.record_webhook_attempt(row.id, delivered=True)
    assert await store.webhooks_due(max_attempts=3) == []


async def test_jobs_survive_a_restart(database_url: str) -> None:
    first = JobStore(database_url)
    await first.open()
    row, _ = await first.create("acct", IMAGE, b"form", "", "key-1", "fp")
    await first.close()
    second = JobStore(database_url)
    await second.open()
    try:
        assert await second.get(row.id) == row
        again, new = await second.create("acct", IMAGE, b"form", "", "key-1", "fp")
        assert again.id == row.id and not new
    finally:
        await second.close()
