"""Two job_service replicas on one database never make one webhook attempt twice.

Each replica is its own `JobStore` (its own connections) on the same SQLite
file or PostgreSQL database; the end-to-end test runs two real `WebhookSender`
sweeps against a real HTTP receiver on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from job_service import store as job_store
from job_service.store import JobStore, Outcome
from lipsync.jobs.v1 import jobs_pb2
from tests.job_service.test_webhooks import Receiver, sender

JOBS = 40


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[JobStore, JobStore]]:
    first, second = JobStore(database_url), JobStore(database_url)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def finished_jobs(store: JobStore, webhook: str, count: int) -> set[str]:
    spec = jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="i", audio="a"))
    ids = set()
    for _ in range(count):
        row, _ = await store.create(
            account_id="acct",
            model="lipsync-image",
            spec=spec.SerializeToString(deterministic=True),
            webhook=webhook,
            idempotency_key="",
            fingerprint="",
        )
        await store.finish(row.id, Outcome(jobs_pb2.JOB_STATUS_COMPLETED, credits=1))
        ids.add(row.id)
    return ids


async def test_concurrent_sweeps_of_two_replicas_claim_each_due_row_once(
    replicas: tuple[JobStore, JobStore],
) -> None:
    first, second = replicas
    ids = await finished_jobs(first, "https://hook.example", JOBS)
    sweeps = await asyncio.gather(
        *(
            store.claim_webhooks(f"{name}-{i}", max_attempts=3, limit=5)
            for i in range(8)
            for name, store in (("a", first), ("b", second))
        )
    )
    # Rows a rolled-back claim held locked may have been skipped by the others.
    leftovers = await first.claim_webhooks("last", max_attempts=3)
    claimed = Counter(row.id for sweep in [*sweeps, leftovers] for row in sweep)
    assert set(claimed) == ids
    assert set(claimed.values()) == {1}
    assert await second.claim_webhooks("later", max_attempts=3) == []


async def test_two_webhook_senders_on_one_database_post_each_attempt_once(
    replicas: tuple[JobStore, JobStore],
) -> None:
    receiver = Receiver(204)
    first, second = replicas
    jobs = job_store.jobs
    state = select(jobs.c.webhook_attempts, jobs.c.webhook_delivered_at, jobs.c.webhook_lease_owner)

    async def attempts() -> list[tuple[int, float | None, str | None]]:
        rows = await second.db.run(lambda conn: conn.execute(state).all())
        return [(count, delivered, owner) for count, delivered, owner in rows]

    senders = [sender(store, allow_private=True) for store in replicas]
    try:
        ids = await finished_jobs(first, receiver.url, JOBS)
        for webhooks in senders:
            webhooks.start()
        for _ in range(600):  # up to 30 s
            if all(owner is None and delivered for _, delivered, owner in await attempts()):
                break
            await asyncio.sleep(0.05)
        # Both sweep loops go round again: nothing is posted a second time.
        finished = await first.get(next(iter(ids)))
        assert finished is not None
        for webhooks in senders:
            webhooks.notify(finished)
        await asyncio.sleep(0.5)
    finally:
        for webhooks in senders:
            await webhooks.stop()
        receiver.server.shutdown()
    posted = Counter(headers["webhook-id"] for headers, _ in receiver.requests)
    assert posted == {f"msg_{job_id}": 1 for job_id in ids}
    assert [count for count, _, _ in await attempts()] == [1] * JOBS


async def test_a_delivery_given_up_is_never_claimed_again_and_keeps_its_reason(
    replicas: tuple[JobStore, JobStore],
) -> None:
    first, second = replicas
    stopped, retried = sorted(await finished_jobs(first, "https://hook.example", 2))
    claimed = {row.id for row in await first.claim_webhooks("a", max_attempts=3)}
    assert claimed == {stopped, retried}
    assert await first.record_webhook_attempt(stopped, "a", False, error="HTTP 410", give_up=True)
    assert await first.record_webhook_attempt(
        retried, "a", False, time.time() + 5, error="HTTP 500"
    )
    later = await second.claim_webhooks("b", max_attempts=3, now=time.time() + 10**6)
    assert [row.id for row in later] == [retried]
    jobs = job_store.jobs
    query = select(jobs.c.id, jobs.c.webhook_gave_up_at, jobs.c.webhook_last_error)
    rows = {
        job_id: (gave_up, error)
        for job_id, gave_up, error in await second.db.run(lambda conn: conn.execute(query).all())
    }
    assert rows[stopped][0] is not None and rows[stopped][1] == "HTTP 410"
    assert rows[retried] == (None, "HTTP 500")


async def test_a_row_in_flight_is_not_claimed_again_before_its_lease_ends(
    replicas: tuple[JobStore, JobStore],
) -> None:
    first, _ = replicas
    (job_id,) = await finished_jobs(first, "https://hook.example", 1)
    webhooks = sender(first, allow_private=True, timeout_s=30)
    try:
        # The lease outlasts the attempt's deadline, whatever the timeout.
        assert webhooks.lease_s > webhooks.timeout_s
        now = time.time()
        (row,) = await first.claim_webhooks(webhooks.owner, 3, lease_s=webhooks.lease_s)
        assert row.id == job_id
        late = now + webhooks.timeout_s + 1
        assert await first.claim_webhooks(webhooks.owner, 3, now=late) == []
    finally:
        await webhooks.stop()
