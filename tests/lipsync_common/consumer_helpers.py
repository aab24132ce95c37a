"""What the pull-consumer tests share: a test stream, its consumer config, a recording handler."""

from __future__ import annotations

import asyncio
import time

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo

from lipsync_common.consumer import Delivery

STREAM = "TEST"
SUBJECT = "test.work"


def config(ack_wait: float = 30.0, max_deliver: int = 5) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name="test",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        filter_subject=SUBJECT,
    )


class Recorder:
    """A handler that records each delivery and does what `behave` says."""

    def __init__(self, behave: object = None) -> None:
        self.deliveries: list[Delivery] = []
        self.times: list[float] = []
        self.changed = asyncio.Condition()
        self.behave = behave

    async def __call__(self, delivery: Delivery) -> None:
        async with self.changed:
            self.deliveries.append(delivery)
            self.times.append(time.monotonic())
            self.changed.notify_all()
        if callable(self.behave):
            await self.behave(delivery)

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: len(self.deliveries) >= count)
        return self.deliveries


async def settled(js: JetStreamContext, timeout_s: float = 10.0) -> None:
    """Until the consumer has nothing delivered and unsettled."""
    async with asyncio.timeout(timeout_s):
        while (await js.consumer_info(STREAM, "test")).num_ack_pending:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def deliveries(info: ConsumerInfo) -> int:
    """How many deliveries the consumer has made, redeliveries included."""
    assert info.delivered is not None
    return info.delivered.consumer_seq or 0
