"""job_service's store on both databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text

from job_service import store as job_store
from job_service.store import IdempotencyConflict, JobStore, Outcome, TooManyProcessing
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.db import Database

SPEC = jobs_pb2.JobSpec(
    lipsync_image=jobs_pb2.LipsyncImageInputs(image="https://x/face.jpg", audio="https://x/a.wav"),
    resolution=jobs_pb2.RESOLUTION_720P,
).SerializeToString(deterministic=True)


def create(
    store: JobStore,
    account_id: str = "acct",
    *,
    spec: bytes = SPEC,
    webhook: str = "",
    key: str = "",
    fingerprint: str = "fp",
    max_processing: int = 0,
) -> Any:
    return store.create(
        account_id=account_id,
        model="lipsync-image",
        spec=spec,
        webhook=webhook,
        idempotency_key=key,
        fingerprint=fingerprint,
        max_processing=max_processing,
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    opened = JobStore(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_create_then_get_returns_the_stored_job(store: JobStore) -> None:
    row, new = await create(store, spec=b"\x00spec\xff")
    assert new and row.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert row.model == "lipsync-image" and row.spec == b"\x00spec\xff"
    assert await store.get(row.id) == row
    assert await store.get("no-such-job") is None


async def test_an_idempotency_key_returns_the_first_job_or_conflicts(store: JobStore) -> None:
    first, _ = await create(store, key="key-1")
    again, new = await create(store, key="key-1")
    assert again.id == first.id and not new
    with pytest.raises(IdempotencyConflict):
        await create(store, spec=b"other", key="key-1", fingerprint="fp-2")
    other_account, new = await create(store, "other", key="key-1")
    assert new and other_account.id != first.id


async def test_simultaneous_requests_with_one_idempotency_key_make_one_job(
    store: JobStore,
) -> None:
    results = await asyncio.gather(*(create(store, key="key-1") for _ in range(10)))
    assert len({row.id for row, _ in results}) == 1
    assert sum(new for _, new in results) == 1


async def test_a_job_finishes_exactly_once(store: JobStore) -> None:
    row, _ = await create(store)
    done = Outcome(jobs_pb2.JOB_STATUS_COMPLETED, output_key="x.mp4", credits=10, timings={"a": 1})
    finished = await store.finish(row.id, done)
    assert finished is not None and finished.credits == 10 and finished.timings == {"a": 1}
    late_failure = Outcome(jobs_pb2.JOB_STATUS_FAILED, error="boom", credits=0)
    assert await store.finish(row.id, late_failure) is None
    stored = await store.get(row.id)
    assert stored is not None and stored.status == jobs_pb2.JOB_STATUS_COMPLETED


async def test_simultaneous_terminal_events_finish_a_job_once(store: JobStore) -> None:
    row, _ = await create(store)
    outcomes = [
        Outcome(jobs_pb2.JOB_STATUS_COMPLETED, output_key="x.mp4", credits=10),
        Outcome(jobs_pb2.JOB_STATUS_FAILED, error="boom", credits=0),
    ] * 5
    finished = await asyncio.gather(*(store.finish(row.id, o) for o in outcomes))
    assert sum(f is not None for f in finished) == 1


async def test_attempts_only_grow(store: JobStore) -> None:
    row, _ = await create(store)
    for attempt in (2, 1, 3, 3):
        await store.record_attempt(row.id, attempt)
    attempts = await store.db.run(
        lambda conn: conn.execute(
            select(job_store.jobs.c.attempts).where(job_store.jobs.c.id == row.id)
        ).scalar_one()
    )
    assert attempts == 3


async def test_unpublished_jobs_are_found_until_marked(store: JobStore) -> None:
    rows = [(await create(store))[0] for _ in range(3)]
    assert {r.id for r in await store.unpublished(older_than_s=-1)} == {r.id for r in rows}
    await store.mark_published([rows[0].id, rows[2].id])
    assert [r.id for r in await store.unpublished(older_than_s=-1)] == [rows[1].id]


async def test_the_processing_cap_counts_only_processing_jobs(store: JobStore) -> None:
    first, _ = await create(store, max_processing=2)
    await create(store, max_processing=2)
    with pytest.raises(TooManyProcessing):
        await create(store, max_processing=2)
    await create(store, "other", max_processing=2)
    await store.finish(first.id, Outcome(jobs_pb2.JOB_STATUS_FAILED, error="x", credits=0))
    await create(store, max_processing=2)


async def test_webhooks_are_due_until_delivered_or_out_of_attempts(store: JobStore) -> None:
    row, _ = await create(store, webhook="https://hook.example")
    assert await store.claim_webhooks("a", max_attempts=2) == []
    await store.finish(row.id, Outcome(jobs_pb2.JOB_STATUS_FAILED, error="x", credits=0))
    for _ in range(2):
        assert [r.id for r in await store.claim_webhooks("a", max_attempts=2)] == [row.id]
        assert await store.record_webhook_attempt(row.id, "a", delivered=False)
    assert await store.claim_webhooks("a", max_attempts=2) == []
    (again,) = await store.claim_webhooks("a", max_attempts=3)
    assert again.webhook_attempts == 2
    assert await store.record_webhook_attempt(row.id, "a", delivered=True)
    assert await store.claim_webhooks("a", max_attempts=3) == []


async def test_a_lease_is_held_until_it_runs_out_and_only_its_owner_records(
    store: JobStore,
) -> None:
    row, _ = await create(store, webhook="https://hook.example")
    await store.finish(row.id, Outcome(jobs_pb2.JOB_STATUS_FAILED, error="x", credits=0))
    now = time.time()
    assert [r.id for r in await store.claim_webhooks("a", 3, now=now, lease_s=60)] == [row.id]
    assert await store.claim_webhooks("b", 3, now=now + 59, lease_s=60) == []
    assert not await store.record_webhook_attempt(row.id, "b", delivered=True)
    # "a" never reported back: after its lease, "b" takes the row over.
    assert [r.id for r in await store.claim_webhooks("b", 3, now=now + 61)] == [row.id]
    assert not await store.record_webhook_attempt(row.id, "a", delivered=True)
    assert await store.record_webhook_attempt(row.id, "b", delivered=False, next_attempt_at=now)
    (retried,) = await store.claim_webhooks("a", 3, now=now + 62)
    assert retried.webhook_attempts == 1


async def test_migrating_a_database_of_the_old_job_schema(database_url: str) -> None:
    """Migration 3 (the typed job contract) and later apply over rows of the old schema."""
    old = Database(database_url, job_store.MIGRATIONS[:2])
    await old.open()
    await old.run(
        lambda conn: conn.execute(
            text(
                "INSERT INTO jobs (id, account_id, model, status, form_state, created_at)"
                " VALUES ('old', 'acct', 2, 1, :form, 1.0)"
            ),
            {"form": b"\x0a\x01x"},
        )
    )
    await old.close()
    store = JobStore(database_url)
    await store.open()
    try:
        legacy = await store.get("old")
        assert legacy is not None and (legacy.model, legacy.spec) == ("", b"")
        row, _ = await create(store)
        assert await store.get(row.id) == row
    finally:
        await store.close()


async def test_jobs_survive_a_restart(database_url: str) -> None:
    first = JobStore(database_url)
    await first.open()
    row, _ = await create(first, key="key-1")
    await first.close()
    second = JobStore(database_url)
    await second.open()
    try:
        assert await second.get(row.id) == row
        again, new = await create(second, key="key-1")
        assert again.id == row.id and not new
    finally:
        await second.close()


async def test_listing_pages_through_an_accounts_jobs_newest_first(store: JobStore) -> None:
    made = [(await create(store))[0] for _ in range(5)]
    await create(store, "someone-else")
    await store.finish(made[1].id, Outcome(status=jobs_pb2.JOB_STATUS_FAILED, error="x", credits=0))
    seen, after = [], None
    while True:
        rows, after = await store.list_jobs("acct", 2, after=after)
        seen += [row.id for row in rows]
        if after is None:
            break
    assert seen == [row.id for row in reversed(made)]
    failed, more = await store.list_jobs("acct", 10, status=jobs_pb2.JOB_STATUS_FAILED)
    assert [row.id for row in failed] == [made[1].id] and more is None
    assert (await store.list_jobs("acct", 10, model="lipsync-video"))[0] == []


async def test_a_removed_output_is_marked_once_and_only_on_an_ended_job(store: JobStore) -> None:
    row, _ = await create(store)
    assert await store.remove_output(row.id) is None
    await store.finish(row.id, Outcome(status=jobs_pb2.JOB_STATUS_COMPLETED, output_key="k.mp4"))
    assert await store.outputs_past(time.time() + 1) == [(row.id, "k.mp4")]
    first = await store.remove_output(row.id, now=100.0)
    again = await store.remove_output(row.id, now=200.0)
    assert first is not None and again is not None
    assert (first.deleted_at, again.deleted_at, again.output_removed_at) == (100.0, 100.0, 100.0)
    assert await store.outputs_past(time.time() + 1) == []


async def test_webhook_history_numbers_attempts_across_a_redelivery(store: JobStore) -> None:
    row, _ = await create(store, webhook="https://hooks.example/x")
    await store.finish(row.id, Outcome(status=jobs_pb2.JOB_STATUS_FAILED, error="x", credits=0))
    (claimed,) = await store.claim_webhooks("a", max_attempts=5)
    assert await store.record_webhook_attempt(claimed.id, "a", False, give_up=True, error="gone")
    assert await store.claim_webhooks("a", max_attempts=5, now=time.time() + 9999) == []
    assert await store.redeliver(row.id)
    (claimed,) = await store.claim_webhooks("a", max_attempts=5)
    assert claimed.webhook_attempts == 0
    await store.record_webhook_attempt(claimed.id, "a", True, status_code=200, latency_ms=4)
    history = await store.webhook_deliveries(row.id)
    assert [(d.attempt, d.status_code, d.error) for d in history] == [
        (1, None, "gone"),
        (2, 200, ""),
    ]
    assert (await store.get(row.id)).webhook_delivered_at is not None  # type: ignore[union-attr]
