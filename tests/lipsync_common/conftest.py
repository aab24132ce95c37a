from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from lipsync_common.jetstream import connect
from tests.lipsync_common.consumer_helpers import STREAM, SUBJECT


@pytest.fixture
async def nats(nats_server: str) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc, js = await connect(nats_server, "test")
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    yield nc, js
    await nc.close()


@pytest.fixture
def js(nats: tuple[Client, JetStreamContext]) -> JetStreamContext:
    return nats[1]
