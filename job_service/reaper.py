"""Fails jobs whose worker message ran out of deliveries.

A worker that crashes mid-job never acks; JetStream redelivers the job up to
`WORKER_MAX_DELIVER` times and then announces it on an advisory subject, which
the `LIPSYNC_ADVISORIES` stream keeps. The reaper reads that stream through a
durable consumer, shared by every job_service replica, and turns each
announcement into a `failed` event, so the job does not stay in `processing`
forever and billing releases whatever was reserved, even when the announcement
was made while job_service was down.
"""

from __future__ import annotations

import json
import logging

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from lipsync.jobs.v1 import events_pb2
from lipsync_common.consumer import Delivery, PullConsumer, Reject
from lipsync_common.jetstream import (
    ADVISORIES_STREAM,
    JOBS_STREAM,
    WORKER_MAX_DELIVER,
    publish_event,
    reaper_consumer_config,
)
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

GAVE_UP = (
    f"the job could not be processed after {WORKER_MAX_DELIVER} attempts; "
    "nothing was charged, please try again"
)


class Reaper:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._consumer = PullConsumer(
            js, ADVISORIES_STREAM, reaper_consumer_config(), self.handle, batch=8
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def handle(self, delivery: Delivery) -> None:
        """Fail the job an advisory names; a NATS error leaves the advisory to be redelivered."""
        try:
            seq = int(json.loads(delivery.data)["stream_seq"])
        except (ValueError, KeyError, TypeError):
            raise Reject("max-deliveries advisory without a stream sequence") from None
        try:
            stored = await self.js.get_msg(JOBS_STREAM, seq)
        except NotFoundError:
            # Already reaped by a delivery whose ack was lost, or removed by hand.
            log.info("max-deliveries advisory for a message no longer queued")
            return
        request = events_pb2.JobRequested.FromString(stored.data or b"")
        with job_context(request.job_id):
            failed = events_pb2.JobEvent(
                job_id=request.job_id,
                account_id=request.account_id,
                failed=events_pb2.JobFailed(error=GAVE_UP),
            )
            # Published before the delete: a crash in between only repeats the
            # publish, which the message id makes a no-op.
            await publish_event(self.js, failed)
            # The work queue keeps an unacked message forever; it is dealt with now.
            await self.js.delete_msg(JOBS_STREAM, seq)
            log.warning("job failed after exhausting deliveries")
