"""The JetStream side of a worker: take a job, keep it alive, report, ack.

Delivery rules:
* a user-fixable failure publishes `failed` and acks: retrying cannot help;
* any other error naks with a delay, so another attempt (maybe on another
  worker) retries; on the last allowed delivery it publishes `failed` instead;
* the terminal event is published (and stored by JetStream) before the ack, so
  a crash in between only causes a redelivery, whose events are deduplicated
  by message id and whose reservation is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from inference_service.failures import JobFailure
from inference_service.pipeline import AlreadySettled, Pipeline
from lipsync.jobs.v1 import events_pb2
from lipsync_common.jetstream import (
    JOBS_STREAM,
    WORKER_CONSUMER,
    WORKER_MAX_DELIVER,
    ensure_worker_consumer,
    events_subject,
)
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
    ) -> None:
        self.js = js
        # A retry waits attempt × this, giving a struggling dependency time to recover.
        self.retry_delay_s = retry_delay_s
        self.pipeline = pipeline
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.in_flight = 0
        self.finished = 0
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await ensure_worker_consumer(self.js)
        self._sub = await self.js.pull_subscribe_bind(WORKER_CONSUMER, stream=JOBS_STREAM)
        self._task = asyncio.create_task(self._run(self._sub))

    async def stop(self) -> None:
        """Stop taking jobs and let the current one finish."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            # An open pull subscription makes nats-py's drain() wait its whole timeout.
            await self._sub.unsubscribe()

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await sub.fetch(batch=1, timeout=2)
            except TimeoutError:  # nats-py raises both its own and the bare asyncio one
                continue
            except Exception:
                log.exception("fetching jobs failed; retrying")
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        request = events_pb2.JobRequested()
        try:
            request.ParseFromString(msg.data)
        except Exception:
            log.error("undecodable job request dropped")
            await msg.term()
            return
        attempt = msg.metadata.num_delivered or 1
        with job_context(request.job_id):
            self.in_flight += 1
            heartbeat = asyncio.create_task(self._heartbeat(msg))
            try:
                await self._publish(
                    request,
                    f"started:{attempt}",
                    started=events_pb2.JobStarted(worker=self.name, attempt=attempt),
                )
                await self._process(msg, request, attempt)
            finally:
                heartbeat.cancel()
                self.in_flight -= 1
                self.finished += 1

    async def _process(self, msg: Msg, request: events_pb2.JobRequested, attempt: int) -> None:
        log.info("job started", extra={"fields": {"attempt": attempt}})
        try:
            completed = await self.pipeline.run(request)
        except JobFailure as exc:
            log.info("job failed", extra={"fields": {"error": str(exc)}})
            await self._publish(request, "failed", failed=events_pb2.JobFailed(error=str(exc)))
            await msg.ack()
            return
        except AlreadySettled:
            log.info("job already settled; redelivery acknowledged")
            await msg.ack()
            return
        except Exception:
            if attempt >= WORKER_MAX_DELIVER:
                log.exception("job failed on its last attempt")
                await self._publish(
                    request, "failed", failed=events_pb2.JobFailed(error=INTERNAL_ERROR)
                )
                await msg.ack()
            else:
                log.exception("job attempt failed; it will be retried")
                await msg.nak(delay=self.retry_delay_s * attempt)
            return
        await self._publish(request, "completed", completed=completed)
        await msg.ack()
        log.info(
            "job completed",
            extra={"fields": {"execution_ms": completed.execution_time_ms}},
        )

    async def _publish(self, request: events_pb2.JobRequested, msg_id: str, **kind: object) -> None:
        event = events_pb2.JobEvent(
            job_id=request.job_id,
            account_id=request.account_id,
            **kind,  # type: ignore[arg-type]
        )
        event.occurred_at.GetCurrentTime()
        await self.js.publish(
            events_subject(request.job_id),
            event.SerializeToString(),
            headers={"Nats-Msg-Id": f"{request.job_id}:{msg_id}"},
            timeout=10,
        )

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()
