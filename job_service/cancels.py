"""Canceling a job in processing, decided in the job's event stream.

A job's outcome is the first terminal event in its subject of LIPSYNC_EVENTS:
job_service and billing_service both read that stream in order and both keep
the first terminal event of a job, ignoring the rest. A cancel therefore does
not just write `canceled` into the database (a worker's `completed` may
already be in the stream, and billing would charge a job that reads
canceled). It reads the job's events, and only while none is terminal
publishes `canceled` conditionally on the job's last sequence: the publish
succeeds only if nothing arrived in the subject since it was read, and is
retried otherwise. Once it is stored, `canceled` is the job's outcome for every
reader, so the database is moved to it at once (the answer to the customer
reads `canceled`) and billing releases whatever was reserved when it reads
the event. A worker's later `completed` is ignored by both.

The worker rendering the job is told with a plain NATS notice and stops
between frames; a worker that takes the job from the queue later finds the
`canceled` event before it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext

from job_service.events import outcome_of
from job_service.metrics import JOBS_FINISHED
from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import events_pb2
from lipsync_common import notices
from lipsync_common.jetstream import EventRaced, job_history, publish_event_after
from lipsync_common.job_spec import STATUS_NAMES

log = logging.getLogger(__name__)

# Conditional publishes tried before giving up; one loses only to another event
# of the same job stored in between (a worker's `started` or its end).
MAX_TRIES = 5


class JobAlreadyEnded(Exception):
    """The job's outcome was decided before the cancel; `row` is the job as it ended."""

    def __init__(self, row: JobRow) -> None:
        super().__init__(row.id)
        self.row = row


class Canceler:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        store: JobStore,
        on_finished: Callable[[JobRow], Awaitable[None]],
    ) -> None:
        self._nc = nc
        self._js = js
        self._store = store
        self._on_finished = on_finished

    async def cancel(self, row: JobRow, by: str) -> JobRow:
        """Cancel a job in processing; the job, now canceled.

        Raises JobAlreadyEnded when the job had ended, and NATS errors (the
        caller answers UNAVAILABLE: nothing was canceled).
        """
        for _ in range(MAX_TRIES):
            history = await job_history(self._js, row.id)
            if history.outcome is not None:
                ended = await self._apply(row, history.outcome)
                if history.outcome.WhichOneof("kind") == "canceled":
                    # An earlier cancel stored its event and stopped before the database.
                    return ended
                raise JobAlreadyEnded(ended)
            event = events_pb2.JobEvent(
                job_id=row.id,
                account_id=row.account_id,
                canceled=events_pb2.JobCanceled(by=by),
            )
            try:
                await publish_event_after(self._js, event, history.last_seq)
            except EventRaced:
                continue
            ended = await self._apply(row, event)
            await notices.publish(self._nc, notices.CANCEL, row.id)
            log.info("job canceled", extra={"fields": {"by": by}})
            return ended
        raise RuntimeError(f"job {row.id}: its events kept changing; cancel not applied")

    async def _apply(self, row: JobRow, event: events_pb2.JobEvent) -> JobRow:
        """Store the outcome the stream decided (the event consumer would, a little later)."""
        outcome = outcome_of(event)
        assert outcome is not None
        finished = await self._store.finish(row.id, outcome)
        if finished is not None:
            JOBS_FINISHED.labels(STATUS_NAMES[finished.status]).inc()
            await self._on_finished(finished)
            return finished
        current = await self._store.get(row.id)
        assert current is not None
        return current
