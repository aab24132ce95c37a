"""The pull consumer across restarts: of the consuming process (SIGTERM, SIGKILL) and of NATS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from lipsync_common.consumer import PullConsumer
from lipsync_common.jetstream import connect
from tests.conftest import NatsProcess
from tests.integration.harness import free_port
from tests.lipsync_common.consumer_helpers import (
    STREAM,
    SUBJECT,
    Recorder,
    config,
)

# A consuming service in its own process, stopped by SIGTERM like every
# service (run_grpc_service calls `stop` on it). It appends "<data> <attempt>"
# to the journal when a handler begins and "done <data>" when it finishes; a
# message "hang" hangs on its first delivery, "slow" takes a second.
CONSUMER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from nats.js.api import AckPolicy, ConsumerConfig
    from lipsync_common.config import ServerSettings
    from lipsync_common.consumer import PullConsumer
    from lipsync_common.grpc_server import run_grpc_service
    from lipsync_common.jetstream import connect

    url, journal = sys.argv[1], sys.argv[2]

    def note(line):
        with open(journal, "a") as f:
            f.write(line + "\\n")

    async def handle(delivery):
        data = delivery.data.decode()
        note(f"{data} {delivery.attempt}")
        if data == "hang" and delivery.attempt == 1:
            await asyncio.Event().wait()
        if data == "slow":
            await asyncio.sleep(1)
        note(f"done {data}")

    async def main():
        nc, js = await connect(url, "consumer-process")
        config = ConsumerConfig(
            durable_name="test", ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0,
            max_deliver=5, filter_subject="test.work")
        consumer = PullConsumer(js, "TEST", config, handle, heartbeat_s=0.2)

        async def start():
            await consumer.start()
            note("ready")

        async def stop():
            await consumer.stop()
            await nc.drain()

        await run_grpc_service(
            ServerSettings.from_env("auth"), [], lambda server: None, start=start, stop=stop)

    asyncio.run(main())
    """
)


class ConsumerProcess:
    def __init__(self, nats_url: str, journal: Path) -> None:
        self.nats_url = nats_url
        self.journal = journal
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "LIPSYNC_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
            "LIPSYNC_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "LIPSYNC_SHUTDOWN_GRACE_S": "1",
        }
        readies = self.lines().count("ready")
        self.process = subprocess.Popen(
            [sys.executable, "-c", CONSUMER_PROCESS, self.nats_url, str(self.journal)], env=env
        )
        self.wait_for(lambda lines: lines.count("ready") > readies)

    def lines(self) -> list[str]:
        return self.journal.read_text().splitlines() if self.journal.exists() else []

    def wait_for(self, condition: object, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self.lines()):  # type: ignore[operator]
            assert self.process is not None and self.process.poll() is None, "consumer died"
            assert time.monotonic() < deadline, f"journal: {self.lines()}"
            time.sleep(0.05)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=20)


@pytest.fixture
def consumer_process(nats_server: str, tmp_path: Path) -> Iterator[ConsumerProcess]:
    process = ConsumerProcess(nats_server, tmp_path / "journal")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait(timeout=20)


async def test_a_message_published_while_the_consumer_was_down_is_consumed_after_restart(
    js: JetStreamContext, consumer_process: ConsumerProcess
) -> None:
    await asyncio.to_thread(consumer_process.start)
    await js.publish(SUBJECT, b"one")
    await asyncio.to_thread(consumer_process.wait_for, lambda lines: "done one" in lines)
    # SIGTERM while "slow" is in hand: the process finishes it before exiting.
    await js.publish(SUBJECT, b"slow")
    await asyncio.to_thread(consumer_process.wait_for, lambda lines: "slow 1" in lines)
    assert await asyncio.to_thread(consumer_process.terminate) == 0
    assert consumer_process.lines()[-1] == "done slow"

    await js.publish(SUBJECT, b"two")
    await asyncio.to_thread(consumer_process.start)
    await asyncio.to_thread(consumer_process.wait_for, lambda lines: "done two" in lines)
    assert await asyncio.to_thread(consumer_process.terminate) == 0
    handled = [line for line in consumer_process.lines() if line != "ready"]
    assert handled == ["one 1", "done one", "slow 1", "done slow", "two 1", "done two"]


async def test_a_message_in_hand_at_a_crash_is_delivered_again_after_restart(
    js: JetStreamContext, consumer_process: ConsumerProcess
) -> None:
    await asyncio.to_thread(consumer_process.start)
    await js.publish(SUBJECT, b"hang")
    await asyncio.to_thread(consumer_process.wait_for, lambda lines: "hang 1" in lines)
    await asyncio.to_thread(consumer_process.kill)

    await asyncio.to_thread(consumer_process.start)
    # Redelivered once the dead process's ack wait has run out.
    await asyncio.to_thread(consumer_process.wait_for, lambda lines: "done hang" in lines)
    assert await asyncio.to_thread(consumer_process.terminate) == 0
    handled = [line for line in consumer_process.lines() if line != "ready"]
    assert handled == ["hang 1", "hang 2", "done hang"]


async def test_the_consumer_waits_out_a_nats_outage_without_spinning(
    restartable_nats: NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    nc, js = await connect(restartable_nats.url, "test")
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    handler = Recorder()
    consumer = PullConsumer(js, STREAM, config(), handler, retry_delay_s=0.2)
    await consumer.start()
    try:
        await js.publish(SUBJECT, b"before")
        await handler.wait_for(1)
        await asyncio.to_thread(restartable_nats.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(restartable_nats.start)
        await js.publish(SUBJECT, b"after", timeout=10)
        await handler.wait_for(2, timeout_s=20)
    finally:
        await consumer.stop()
        await nc.close()
    assert [d.data for d in handler.deliveries] == [b"before", b"after"]
    # At most one failed pull per fetch timeout or retry delay, not a tight loop.
    failed_pulls = [r for r in caplog.records if r.getMessage().startswith("pulling messages")]
    assert len(failed_pulls) <= 2 / 0.2 + 2
