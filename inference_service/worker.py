"""The JetStream side of a worker: take a job, report what happened, settle it.

Delivery rules:
* a user-fixable failure publishes `failed` and acks: retrying cannot help;
* any other error naks with a delay, so another attempt (maybe on another
  worker) retries; on the last allowed delivery it publishes `failed` instead;
* the terminal event is published (and stored by JetStream) before the ack, so
  a crash in between only causes a redelivery, whose events are deduplicated
  by message id and whose reservation is idempotent.

The `PullConsumer` keeps a running job's message alive with heartbeats and
lets the jobs in hand finish when the worker stops.

Cancel and progress (`cancels.py`, `progress.py`):
* a job that already ended (canceled while queued) is acked and publishes
  nothing; `started` is published only if no event came in since that look
  (a conditional publish), so it never lands behind a `canceled`;
* a job canceled while held is stopped by the pipeline and acked, publishing
  nothing more: job_service's `canceled` is its outcome, billing releases its
  reservation on it. `completed` is never published once its flag is set;
* while a job is held, its progress is published on plain NATS.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.client import Client
from nats.js import JetStreamContext

from inference_service.cancels import POLL_S, CancelFlag, Cancels
from inference_service.failures import JobFailure
from inference_service.pipeline import AlreadySettled, Pipeline
from inference_service.progress import Progress, ProgressReporter
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.consumer import Delivery, PullConsumer, Retry
from lipsync_common.jetstream import (
    JOBS_STREAM,
    EventRaced,
    job_history,
    publish_event,
    publish_event_after,
    worker_consumer_config,
)
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

INTERNAL_ERROR = (
    "the job failed because of an internal error; nothing was charged, please try again"
)
# Conditional publishes of `started` that lose to another event before the job is retried.
_START_TRIES = 3


class Worker:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        pipeline: Pipeline,
        name: str,
        heartbeat_s: float,
        retry_delay_s: float = 2.0,
        *,
        concurrency: int = 1,
        cancel_poll_s: float = POLL_S,
    ) -> None:
        self.nc = nc
        self.js = js
        self.cancels = Cancels(nc, js, cancel_poll_s)
        # A retry waits attempt × this, giving a struggling dependency time to recover.
        self.retry_delay_s = retry_delay_s
        self.pipeline = pipeline
        self.name = name
        self.in_flight = 0
        self.finished = 0
        # One job per pull: a job waiting here could start sooner on an idle worker.
        self._consumer = PullConsumer(
            js,
            JOBS_STREAM,
            worker_consumer_config(),
            self.handle,
            batch=1,
            concurrency=concurrency,
            heartbeat_s=heartbeat_s,
            retry_delay_s=retry_delay_s,
        )

    async def start(self) -> None:
        # Listening for cancels before the first job is taken.
        await self.cancels.start()
        await self._consumer.start()

    async def stop(self) -> None:
        """Stop taking jobs and let the current ones finish."""
        await self._consumer.stop()
        await self.cancels.stop()

    async def handle(self, delivery: Delivery) -> None:
        request = delivery.parse(events_pb2.JobRequested)
        with job_context(request.job_id), self.cancels.watch(request.job_id) as cancel:
            self.in_flight += 1
            try:
                if not await self._start(request, delivery.attempt):
                    return
                progress = Progress(request.job_id, delivery.attempt)
                async with ProgressReporter(self.nc, progress) as reporter:
                    await self._process(request, delivery, progress, cancel, reporter)
            finally:
                self.in_flight -= 1
                self.finished += 1

    async def _start(self, request: events_pb2.JobRequested, attempt: int) -> bool:
        """Publish `started`, or return False for a job that already ended."""
        started = events_pb2.JobEvent(
            job_id=request.job_id,
            account_id=request.account_id,
            started=events_pb2.JobStarted(worker=self.name, attempt=attempt),
        )
        for _ in range(_START_TRIES):
            history = await job_history(self.js, request.job_id)
            if history.outcome is not None:
                log.info(
                    "job already ended; acknowledged without running it",
                    extra={
                        "fields": {
                            "outcome": history.outcome.WhichOneof("kind"),
                            "attempt": attempt,
                        }
                    },
                )
                return False
            try:
                # Conditional, so that a `canceled` stored since the look is seen.
                await publish_event_after(self.js, started, history.last_seq)
            except EventRaced:
                continue  # another event came in meanwhile: look again
            return True
        raise Retry(self.retry_delay_s * attempt)

    async def _publish_completed(
        self, request: events_pb2.JobRequested, completed: events_pb2.JobCompleted
    ) -> bool:
        """Publish `completed` unless the job ended meanwhile (a cancel); whether it was.

        Conditional like `started`: a `completed` stored after a `canceled` would
        change nothing (the first terminal event decides), but its output would be
        left behind with no job pointing at it.
        """
        event = events_pb2.JobEvent(
            job_id=request.job_id, account_id=request.account_id, completed=completed
        )
        while True:
            history = await job_history(self.js, request.job_id)
            if history.outcome is not None:
                return False
            try:
                await publish_event_after(self.js, event, history.last_seq)
            except EventRaced:
                continue
            return True

    async def _process(
        self,
        request: events_pb2.JobRequested,
        delivery: Delivery,
        progress: Progress,
        cancel: CancelFlag,
        reporter: ProgressReporter,
    ) -> None:
        log.info("job started", extra={"fields": {"attempt": delivery.attempt}})
        try:
            completed = await self.pipeline.run(request, progress, cancel)
        except Exception as exc:
            if cancel.is_set():
                # Whatever the pipeline was doing when it stopped (JobCanceled, or an
                # error of the work it cut short): the job's outcome is `canceled`.
                self._log_canceled(cancel, progress)
                return
            await self._settle_error(request, delivery, exc)
            return
        # Checked right before publishing: a cancel heard after the render is honoured.
        if cancel.is_set():
            await asyncio.to_thread(self.pipeline.discard, completed.output_key)
            self._log_canceled(cancel, progress)
            return
        await reporter.publish()
        if not await self._publish_completed(request, completed):
            await asyncio.to_thread(self.pipeline.discard, completed.output_key)
            self._log_canceled(cancel, progress)
            return
        log.info(
            "job completed",
            extra={"fields": {"execution_ms": completed.execution_time_ms}},
        )

    def _log_canceled(self, cancel: CancelFlag, progress: Progress) -> None:
        stopped_ms = round((time.monotonic() - (cancel.set_at or time.monotonic())) * 1000)
        log.info(
            "canceled job stopped; acknowledged",
            extra={
                "fields": {
                    "stage": jobs_pb2.JobStage.Name(progress.stage),
                    "stopped_after_ms": stopped_ms,
                }
            },
        )

    async def _settle_error(
        self, request: events_pb2.JobRequested, delivery: Delivery, exc: Exception
    ) -> None:
        """The pipeline raised `exc`: fail the job, acknowledge it, or have it retried."""
        if isinstance(exc, JobFailure):
            log.info("job failed", extra={"fields": {"error": str(exc)}})
            await self._publish(request, failed=events_pb2.JobFailed(error=str(exc)))
        elif isinstance(exc, AlreadySettled):
            log.info("job already settled; redelivery acknowledged")
        elif not delivery.last_attempt:
            log.error("job attempt failed; it will be retried", exc_info=exc)
            raise Retry(self.retry_delay_s * delivery.attempt) from exc
        else:
            log.error("job failed on its last attempt", exc_info=exc)
            await self._publish(request, failed=events_pb2.JobFailed(error=INTERNAL_ERROR))

    async def _publish(self, request: events_pb2.JobRequested, **kind: object) -> None:
        event = events_pb2.JobEvent(
            job_id=request.job_id,
            account_id=request.account_id,
            **kind,  # type: ignore[arg-type]
        )
        await publish_event(self.js, event)
