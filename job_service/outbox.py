"""Hands stored jobs to the inference workers over the JetStream work queue.

A job is stored first and published second, and CreateJob never waits for
the publish: it answers once the job is stored, so an answer always means the
job exists and will run, and an error always means it does not (with NATS
down, a publish waiting past the gateway's deadline used to answer 503 for a
job that later ran and was charged). `enqueue` hands the stored job to the
publisher tasks; `published_at` is the outbox flag, and a job whose publish
failed keeps it unset and is published again by the outbox pass, every
`interval_s`. The flags of
published jobs are written in batches, one UPDATE per `MARK_EVERY_S`, not one
per job: a job created at full speed then costs one write transaction, not
two. Losing a batch (a crash before it is written) only publishes those jobs
again, which JetStream drops as duplicates by their message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import events_pb2
from lipsync_common.jetstream import JOBS_SUBJECT, message_id
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

MARK_EVERY_S = 0.05
# Publishes in flight at once; each waits for JetStream's acknowledgement.
PUBLISHERS = 4
# Jobs waiting for a publisher; past this the outbox pass publishes them.
QUEUE_LIMIT = 10_000


async def publish_job(js: JetStreamContext, row: JobRow) -> None:
    """Publish a job request; the message id makes a repeated publish a no-op."""
    created = Timestamp()
    created.FromNanoseconds(int(row.created_at * 1e9))
    request = events_pb2.JobRequested(job_id=row.id, account_id=row.account_id, created_at=created)
    request.spec.ParseFromString(row.spec)
    await js.publish(
        JOBS_SUBJECT,
        request.SerializeToString(),
        headers={"Nats-Msg-Id": message_id(row.id)},
        timeout=5,
    )


class Outbox:
    def __init__(self, store: JobStore, js: JetStreamContext, interval_s: float) -> None:
        self.store = store
        self.js = js
        self.interval_s = interval_s
        self._published: list[str] = []
        self._queue: asyncio.Queue[JobRow] = asyncio.Queue(QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []

    def enqueue(self, row: JobRow) -> None:
        """Have a stored job published soon; never waits on NATS."""
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            log.warning("publish queue full; the outbox pass will publish the job")

    async def publish(self, row: JobRow) -> None:
        """Publish a stored job; on failure the outbox pass publishes it later."""
        try:
            await publish_job(self.js, row)
        except Exception:
            log.exception("publishing job failed; the outbox will retry")
            return
        self._published.append(row.id)

    async def publish_pending(self) -> None:
        """The outbox pass: publish jobs whose first publish failed."""
        for row in await self.store.unpublished(older_than_s=self.interval_s):
            with job_context(row.id):
                await self.publish(row)

    async def flush(self) -> None:
        """Record the published flags gathered since the last flush."""
        ids, self._published = self._published, []
        if ids:
            await self.store.mark_published(ids)

    def start(self) -> None:
        self._tasks = [
            *(asyncio.create_task(self._publisher()) for _ in range(PUBLISHERS)),
            asyncio.create_task(self._every(MARK_EVERY_S, self.flush)),
            asyncio.create_task(self._every(self.interval_s, self.publish_pending)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()

    async def _publisher(self) -> None:
        while True:
            row = await self._queue.get()
            with job_context(row.id):
                await self.publish(row)

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await step()
            except Exception:
                log.exception("outbox step failed")
