"""Records what workers report about jobs, from the JetStream events stream.

Each event is applied idempotently: `started` only raises the attempt count,
and a terminal event moves a job out of `processing` at most once, so a
redelivered or duplicated event changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

from job_service.metrics import JOBS_FINISHED
from job_service.store import JobRow, JobStore, Outcome
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.consumer import Delivery, PullConsumer
from lipsync_common.jetstream import EVENTS_STREAM, JOB_SERVICE_EVENTS, events_consumer_config
from lipsync_common.job_spec import STATUS_NAMES
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)


def outcome_of(event: events_pb2.JobEvent) -> Outcome | None:
    kind = event.WhichOneof("kind")
    if kind == "completed":
        done = event.completed
        return Outcome(
            status=jobs_pb2.JOB_STATUS_COMPLETED,
            output_key=done.output_key,
            execution_time_ms=done.execution_time_ms,
            timings=dict(done.timings),
            credits=done.credits,
            seed=done.seed,
        )
    if kind == "failed":
        # A failed job is never charged: billing releases its reservation.
        return Outcome(status=jobs_pb2.JOB_STATUS_FAILED, error=event.failed.error, credits=0)
    if kind == "canceled":
        # Nor a canceled one.
        return Outcome(status=jobs_pb2.JOB_STATUS_CANCELED, credits=0)
    return None


class EventConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        store: JobStore,
        on_finished: Callable[[JobRow], Awaitable[None]],
    ) -> None:
        self.store = store
        self.on_finished = on_finished
        self._consumer = PullConsumer(
            js,
            EVENTS_STREAM,
            events_consumer_config(JOB_SERVICE_EVENTS),
            self.handle,
            batch=32,
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def handle(self, delivery: Delivery) -> None:
        # A store error propagates: the consumer logs it and redelivers the event.
        event = delivery.parse(events_pb2.JobEvent)
        with job_context(event.job_id):
            await self.apply(event)

    async def apply(self, event: events_pb2.JobEvent) -> None:
        if event.WhichOneof("kind") == "started":
            await self.store.record_attempt(event.job_id, event.started.attempt)
            return
        outcome = outcome_of(event)
        if outcome is None:
            return
        row = await self.store.finish(event.job_id, outcome)
        if row is None:
            log.info("duplicate terminal event ignored")
            return
        state = STATUS_NAMES[row.status]
        JOBS_FINISHED.labels(state).inc()
        log.info("job finished", extra={"fields": {"status": state, "error": row.error}})
        await self.on_finished(row)
