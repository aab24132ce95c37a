"""The one JetStream pull consumer every service reads its stream with.

A `PullConsumer` declares its durable consumer, pulls messages in batches and
hands each to an async handler as a `Delivery`. What the handler does decides
what the server hears:

* it returns: the message is acknowledged;
* it raises `Retry(delay_s)`: the message is delivered again after the delay;
* it raises `Reject(reason)`: the message can never succeed and is terminated;
* it raises anything else: the failure is logged and the message is delivered
  again after `retry_delay_s`.

Every message in hand (being handled, or fetched and waiting for a free
handler) gets an in-progress heartbeat every `heartbeat_s`, so a long handler
keeps its message however short the consumer's ack wait. After the consumer's
`max_deliver` deliveries the server stops redelivering and publishes a
max-deliveries advisory; a handler sees how many deliveries it has had, and
whether this is the last, on the `Delivery`.

`stop()` stops pulling, lets every message in hand be handled and settled, then
unsubscribes: a service calls it on SIGTERM (see `grpc_server.run_grpc_service`)
so a deploy loses no work and causes no redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

# The server's ack wait when a consumer's configuration names none.
_SERVER_ACK_WAIT_S = 30.0


class Reject(Exception):
    """Raised by a handler for a message that can never succeed: it is terminated."""


class Retry(Exception):
    """Raised by a handler to have its message delivered again after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"retry in {delay_s:g} s")
        self.delay_s = delay_s


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message, as a handler sees it."""

    subject: str
    data: bytes
    # 1 on the first delivery, counting redeliveries after a nak or an expired ack wait.
    attempt: int
    # The consumer's MaxDeliver; None when deliveries are unlimited.
    max_deliver: int | None
    stream_seq: int

    @property
    def last_attempt(self) -> bool:
        """Whether the server will give up on the message if this delivery is not acked."""
        return self.max_deliver is not None and self.attempt >= self.max_deliver

    def parse(self, message_type: type[M]) -> M:
        """The payload as a protobuf message; an undecodable one is rejected."""
        try:
            return message_type.FromString(self.data)
        except DecodeError:
            raise Reject(f"undecodable {message_type.DESCRIPTOR.name}") from None


Handler = Callable[[Delivery], Awaitable[None]]


class PullConsumer:
    """Consume one durable consumer of one stream with a handler."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        handler: Handler,
        *,
        batch: int = 1,
        concurrency: int = 1,
        heartbeat_s: float | None = None,
        retry_delay_s: float = 1.0,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        """
        `batch` is how many messages one pull takes: messages beyond the free
        handlers wait here, so keep it at 1 for long jobs another process could
        start sooner. `fetch_timeout_s` bounds how long `stop()` waits for the
        pull in flight; `retry_delay_s` is both the redelivery delay after an
        unexpected handler error and the pause after a failed pull.
        """
        if not config.durable_name:
            raise ValueError("a PullConsumer needs a durable consumer")
        self.js = js
        self.stream = stream
        self.config = config
        self.durable = config.durable_name
        self._handler = handler
        self.batch = batch
        self.concurrency = concurrency
        # Well inside the ack wait, so one late heartbeat still arrives in time.
        self.heartbeat_s = heartbeat_s or (config.ack_wait or _SERVER_ACK_WAIT_S) / 3
        self.retry_delay_s = retry_delay_s
        self.fetch_timeout_s = fetch_timeout_s
        max_deliver = config.max_deliver
        self._max_deliver = max_deliver if max_deliver is not None and max_deliver > 0 else None
        self._slots = asyncio.Semaphore(concurrency)
        # Keyed by reply subject, unique per delivery (a Msg is not hashable).
        self._in_hand: dict[str, Msg] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._fetcher: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.js.add_consumer(self.stream, self.config)
        self._sub = await self.js.pull_subscribe_bind(self.durable, stream=self.stream)
        self._stopping.clear()
        self._fetcher = asyncio.create_task(self._fetch_loop(self._sub), name=self.durable)
        self._heartbeats = asyncio.create_task(self._heartbeat_loop())
        log.info("consuming", extra={"fields": {"stream": self.stream, "consumer": self.durable}})

    async def stop(self) -> None:
        """Stop pulling, finish every message in hand, then unsubscribe."""
        self._stopping.set()
        if self._fetcher is not None:
            # Returns once the pull in flight expires and its messages are handed out.
            await self._fetcher
            self._fetcher = None
        await asyncio.gather(*self._handlers)
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            await asyncio.gather(self._heartbeats, return_exceptions=True)
            self._heartbeats = None
        if self._sub is not None:
            # An open pull subscription makes nats-py's drain() wait its whole timeout.
            await self._sub.unsubscribe()
            self._sub = None

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            # Pull only once a handler is free: until then messages stay in the
            # stream, where another process can take them.
            async with self._slots:
                pass
            if self._stopping.is_set():
                return
            try:
                msgs = await sub.fetch(self.batch, timeout=self.fetch_timeout_s)
            except TimeoutError:  # nats-py raises both its own and the bare asyncio one
                continue
            except Exception as exc:
                # NATS is restarting or unreachable; the client reconnects meanwhile.
                log.warning(
                    "pulling messages failed; retrying",
                    extra={"fields": {"consumer": self.durable, "error": repr(exc)}},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.retry_delay_s)
                continue
            self._in_hand.update((msg.reply, msg) for msg in msgs)
            for msg in msgs:
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(msg))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._handle_and_settle(msg)
        finally:
            del self._in_hand[msg.reply]
            self._slots.release()

    async def _handle_and_settle(self, msg: Msg) -> None:
        delivery = Delivery(
            subject=msg.subject,
            data=msg.data,
            attempt=msg.metadata.num_delivered or 1,
            max_deliver=self._max_deliver,
            stream_seq=msg.metadata.sequence.stream,
        )
        fields = {
            "consumer": self.durable,
            "subject": delivery.subject,
            "stream_seq": delivery.stream_seq,
            "attempt": delivery.attempt,
        }
        try:
            try:
                await self._handler(delivery)
            except Reject as exc:
                log.error("message rejected", extra={"fields": {**fields, "reason": str(exc)}})
                await msg.term()
            except Retry as exc:
                if delivery.last_attempt:
                    log.error("message failed its last delivery", extra={"fields": fields})
                await msg.nak(delay=exc.delay_s)
            except Exception:
                log.exception(
                    "message failed its last delivery"
                    if delivery.last_attempt
                    else "handling a message failed; it will be retried",
                    extra={"fields": fields},
                )
                await msg.nak(delay=self.retry_delay_s)
            else:
                # Confirmed by the server, so a message finished before stop()
                # returns is never redelivered.
                await msg.ack_sync()
        except Exception as exc:
            # The ack or nak was lost with the connection: the server redelivers
            # the message, and every handler is idempotent.
            log.warning(
                "settling a message failed", extra={"fields": {**fields, "error": repr(exc)}}
            )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for msg in list(self._in_hand.values()):
                # A heartbeat lost with the connection at worst causes a redelivery.
                with contextlib.suppress(Exception):
                    await msg.in_progress()
