"""Capture or release reservations as job events arrive on JetStream.

billing_service reads LIPSYNC_EVENTS through its own durable pull consumer:
`completed` captures the job's reservation, `failed` and `canceled` release
it, anything else is acknowledged untouched. Events are handled one at a time
in stream order, so the first terminal event of a job settles it (a worker's
`completed` that arrives after a `canceled` finds the job released). The
ledger makes both idempotent, so an event delivered twice, or published twice
under different message ids, settles the job once. A payload that cannot be
decoded, or names no job, is terminated (it would never succeed); a database
error is retried after a short delay.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from billing_service.ledger import Ledger
from lipsync.jobs.v1 import events_pb2
from lipsync_common import jetstream
from lipsync_common.consumer import Delivery, PullConsumer, Reject
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

FETCH_BATCH = 16
RETRY_DELAY_S = 1.0


async def handle_event(ledger: Ledger, delivery: Delivery) -> None:
    """Apply one event to the ledger; raising leaves the event to be redelivered."""
    event = delivery.parse(events_pb2.JobEvent)
    if not event.job_id:
        raise Reject("job event without a job id")
    with job_context(event.job_id):
        kind = event.WhichOneof("kind")
        # Only the database can fail here, and it comes back: the consumer retries.
        if kind == "completed":
            await ledger.capture(event.job_id, event.account_id)
        elif kind == "failed":
            await ledger.release(event.job_id, event.account_id)
        elif kind == "canceled":
            await ledger.release(event.job_id, event.account_id, reason="job canceled")


class EventConsumer:
    """Started with the service and stopped before the ledger closes."""

    def __init__(self, js: JetStreamContext, ledger: Ledger) -> None:
        self._consumer = PullConsumer(
            js,
            jetstream.EVENTS_STREAM,
            jetstream.events_consumer_config(jetstream.BILLING_SERVICE_EVENTS),
            self._handle,
            batch=FETCH_BATCH,
            retry_delay_s=RETRY_DELAY_S,
        )
        self._ledger = ledger

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        """Stop pulling; an event in hand is settled in the ledger and acknowledged first."""
        await self._consumer.stop()

    async def _handle(self, delivery: Delivery) -> None:
        await handle_event(self._ledger, delivery)
