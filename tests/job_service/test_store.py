from __future__ import annotations

from pathlib import Path

import pytest

from job_service.store import IdempotencyConflict, JobStore, Outcome
from lipsync.jobs.v1 import jobs_pb2

IMAGE = jobs_pb2.MODEL_LIPSYNC_IMAGE


@pytest.fixture
async def store(tmp_path: Path) -> JobStore:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    yield store
    await store.close()


async def test_create_then_get_returns_a_processing_job(store: JobStore) -> None:
    row, new = await store.create("acct", IMAGE, b"form", "", "", "fp")
    assert new and row.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert await store.get(row.id) == row


async def test_same_idempotency_key_and_body_returns_the_first_job(store: JobStore) -> None:
    first, _ = await store.create("acct", IMAGE, b"form", "", "key-1", "fp")
    again, new = await store.create("acct", IMAGE, b"form", "", "key-1", "fp")
    assert again.id == first.id and not new


async def test_idempotency_key_with_another_body_conflicts(store: JobStore) -> None:
    await store.create("acct", IMAGE, b"form", "", "key-1", "fp")
    with pytest.raises(IdempotencyConflict):
        await store.create("acct", IMAGE, b"other", "", "key-1", "fp-2")


async def test_idempotency_keys_are_per_account(store: JobStore) -> None:
    first, _ = await store.create("a", IMAGE, b"form", "", "key-1", "fp")
    second, new = await store.create("b", IMAGE, b"form", "", "key-1", "fp")
    assert new and second.id != first.id


async def test_a_job_finishes_exactly_once(store: JobStore) -> None:
    row, _ = await store.create("acct", IMAGE, b"form", "", "", "fp")
    done = Outcome(jobs_pb2.JOB_STATUS_COMPLETED, output_key="x.mp4", credits=10, timings={"a": 1})
    finished = await store.finish(row.id, done)
    assert finished is not None and finished.credits == 10 and finished.timings == {"a": 1}
    late_failure = Outcome(jobs_pb2.JOB_STATUS_FAILED, error="boom", credits=0)
    assert await store.finish(row.id, late_failure) is None
    stored = await store.get(row.id)
    assert stored is not None and stored.status == jobs_pb2.JOB_STATUS_COMPLETED


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
