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
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from inference_service.failures import JobFailure
from inference_service.pipeline import AlreadySettled, Pipeline
from lipsync.jobs.v1 import events_pb2
from lipsync_common.consumer import Delivery, PullConsumer, Retry
from lipsync_common.jetstream import JOBS_STREAM, publish_event, worker_consumer_config
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

INTERNAL_ERROR = (
    "the job failed because of an internal error; nothing was charged, please try again"
)


class Worker:
    def __init__(
        self,
        js: JetStreamContext,
        pipeline: Pipeline,
        name: str,
        heartbeat_s: float,
        retry_delay_s: float = 2.0,
        *,
        concurrency: int = 1,
    ) -> None:
        self.js = js
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
        await self._consumer.start()

    async def stop(self) -> None:
        """Stop taking jobs and let the current ones finish."""
        await self._consumer.stop()

    async def handle(self, delivery: Delivery) -> None:
        request = delivery.parse(events_pb2.JobRequested)
        with job_context(request.job_id):
            self.in_flight += 1
            try:
                await self._publish(
                    request,
                    started=events_pb2.JobStarted(worker=self.name, attempt=delivery.attempt),
                )
                await self._process(request, delivery)
            finally:
                self.in_flight -= 1
                self.finished += 1

    async def _process(self, request: events_pb2.JobRequested, delivery: Delivery) -> None:
        log.info("job started", extra={"fields": {"attempt": delivery.attempt}})
        try:
            completed = await self.pipeline.run(request)
        except JobFailure as exc:
            log.info("job failed", extra={"fields": {"error": str(exc)}})
            await self._publish(request, failed=events_pb2.JobFailed(error=str(exc)))
            return
        except AlreadySettled:
            log.info("job already settled; redelivery acknowledged")
            return
        except Exception as exc:
            if not delivery.last_attempt:
                log.exception("job attempt failed; it will be retried")
                raise Retry(self.retry_delay_s * delivery.attempt) from exc
            log.exception("job failed on its last attempt")
            await self._publish(request, failed=events_pb2.JobFailed(error=INTERNAL_ERROR))
            return
        await self._publish(request, completed=completed)
        log.info(
            "job completed",
            extra={"fields": {"execution_ms": completed.execution_time_ms}},
        )

    async def _publish(self, request: events_pb2.JobRequested, **kind: object) -> None:
        event = events_pb2.JobEvent(
            job_id=request.job_id,
            account_id=request.account_id,
            **kind,  # type: ignore[arg-type]
        )
        await publish_event(self.js, event)
