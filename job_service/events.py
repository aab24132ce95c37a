"""Records what workers report about jobs, from the JetStream events stream.

Each event is applied idempotently: `started` only raises the attempt count,
and a terminal event moves a job out of `processing` at most once, so a
redelivered or duplicated event changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from job_service.metrics import JOBS_FINISHED
from job_service.store import JobRow, JobStore, Outcome
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.jetstream import (
    EVENTS_STREAM,
    JOB_SERVICE_EVENTS,
    ensure_events_consumer,
)
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
    return None


class EventConsumer:
    def __init__(
        self, js: JetStreamContext, store: JobStore, on_finished: Callable[[JobRow], None]
    ) -> None:
        self.js = js
        self.store = store
        self.on_finished = on_finished
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        await ensure_events_consumer(self.js, JOB_SERVICE_EVENTS)
        self._sub = await self.js.pull_subscribe_bind(
            JOB_SERVICE_EVENTS.durable, stream=EVENTS_STREAM
        )
        self._task = asyncio.create_task(self._run(self._sub))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            # An open pull subscription makes nats-py's drain() wait its whole timeout.
            await self._sub.unsubscribe()

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                msgs = await sub.fetch(batch=32, timeout=5)
            except TimeoutError:  # nats-py raises both its own and the bare asyncio one
                continue
            except Exception:
                log.exception("fetching job events failed; retrying")
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        event = events_pb2.JobEvent()
        try:
            event.ParseFromString(msg.data)
        except Exception:
            log.error("undecodable job event dropped", extra={"fields": {"subject": msg.subject}})
            await msg.term()
            return
        with job_context(event.job_id):
            try:
                await self.apply(event)
            except Exception:
                log.exception("recording job event failed; will retry")
                await msg.nak(delay=1)
                return
            await msg.ack()

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
        state = "completed" if row.status == jobs_pb2.JOB_STATUS_COMPLETED else "failed"
        JOBS_FINISHED.labels(state).inc()
        log.info("job finished", extra={"fields": {"status": state, "error": row.error}})
        self.on_finished(row)
