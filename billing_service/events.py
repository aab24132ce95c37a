"""Capture or release reservations as job events arrive on JetStream.

billing_service reads LIPSYNC_EVENTS through its own durable pull consumer:
`completed` captures the job's reservation, `failed` releases it, anything
else is acknowledged untouched. The ledger makes both idempotent, so an event
delivered twice, or published twice under different message ids, settles the
job once. A payload that cannot be decoded is terminated (it would never
decode); any other error is retried after a short delay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.js import JetStreamContext

from billing_service.ledger import Ledger
from lipsync.jobs.v1 import events_pb2
from lipsync_common import jetstream
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

FETCH_BATCH = 16
# How long one fetch waits for messages, and so the longest stop() waits for it.
FETCH_TIMEOUT_S = 1.0
RETRY_DELAY_S = 1.0


class Message(Protocol):
    """The part of a JetStream message the handler uses."""

    data: bytes

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...


async def handle_message(ledger: Ledger, msg: Message) -> None:
    """Apply one event to the ledger and acknowledge it, exactly once in effect."""
    try:
        event = events_pb2.JobEvent.FromString(msg.data)
    except DecodeError:
        log.error("undecodable job event; terminated")
        await msg.term()
        return
    if not event.job_id:
        log.error("job event without a job id; terminated")
        await msg.term()
        return
    with job_context(event.job_id):
        kind = event.WhichOneof("kind")
        try:
            if kind == "completed":
                await ledger.capture(event.job_id, event.account_id)
            elif kind == "failed":
                await ledger.release(event.job_id, event.account_id)
        except Exception:
            # Only the database can fail here, and it comes back: retry later.
            log.exception("could not settle the job; will retry")
            await msg.nak(delay=RETRY_DELAY_S)
            return
        await msg.ack()


class EventConsumer:
    """The consumer loop, started with the service and stopped before the ledger."""

    def __init__(self, ledger: Ledger, nats_url: str) -> None:
        self._ledger = ledger
        self._nats_url = nats_url
        self._nc: Client | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        nc, js = await jetstream.connect(self._nats_url, "billing-service")
        self._nc = nc
        await jetstream.ensure_streams(js)
        await jetstream.ensure_events_consumer(js, jetstream.BILLING_SERVICE_EVENTS)
        sub = await js.pull_subscribe_bind(
            jetstream.BILLING_SERVICE_EVENTS.durable, stream=jetstream.EVENTS_STREAM
        )
        self._stopping.clear()
        self._sub = sub
        self._task = asyncio.create_task(self._run(sub), name="billing-events")
        log.info("consuming job events")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            # The loop notices within one fetch timeout; a message in hand is
            # finished and acknowledged first.
            await self._task
            self._task = None
        if self._sub is not None:
            # nats-py's drain() waits its whole timeout (30 s) on a pull
            # subscription that is still open; nothing is in flight any more.
            await self._sub.unsubscribe()
            self._sub = None
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            try:
                messages = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
            except TimeoutError:  # nats-py raises both its own and the bare asyncio one
                continue
            except Exception:
                # NATS is restarting or unreachable; the client reconnects.
                log.exception("fetching job events failed; retrying")
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            for msg in messages:
                try:
                    await handle_message(self._ledger, msg)
                except Exception:
                    # An ack lost with the connection: the server redelivers
                    # the event, and settling it again changes nothing.
                    log.exception("acknowledging a job event failed")
