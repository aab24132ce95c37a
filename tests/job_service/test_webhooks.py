"""Webhook delivery to a real local HTTP receiver."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from job_service.representation import job_proto
from job_service.store import JobStore, Outcome
from job_service.webhooks import WebhookSender
from lipsync.jobs.v1 import jobs_pb2


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append((dict(self.headers.items()), json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(204)
    yield r
    r.server.shutdown()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    yield store
    await store.close()


def sender(store: JobStore, allow_private: bool) -> WebhookSender:
    render = functools.partial(job_proto, public_url="https://api", signing_key=b"k", ttl_s=60)
    return WebhookSender(store, render, timeout_s=5, max_attempts=3, allow_private=allow_private)


async def finished_job(store: JobStore, webhook: str) -> str:
    row, _ = await store.create("acct", jobs_pb2.MODEL_LIPSYNC_IMAGE, b"", webhook, "", "")
    await store.finish(row.id, Outcome(jobs_pb2.JOB_STATUS_FAILED, error="bad audio", credits=0))
    return row.id


async def test_the_terminal_job_object_is_posted(store: JobStore, receiver: Receiver) -> None:
    job_id = await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=True)
    try:
        (row,) = await store.webhooks_due(3)
        assert await webhooks.deliver(row)
    finally:
        await webhooks.stop()
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == f"msg_{job_id}"
    assert body["id"] == job_id and body["status"] == "failed" and body["error"] == "bad audio"
    assert await store.webhooks_due(3) == []


async def test_a_non_2xx_answer_leaves_the_delivery_due(store: JobStore) -> None:
    failing = Receiver(500)
    try:
        await finished_job(store, failing.url)
        webhooks = sender(store, allow_private=True)
        (row,) = await store.webhooks_due(3)
        assert not await webhooks.deliver(row)
        await webhooks.stop()
        assert len(await store.webhooks_due(3)) == 1
    finally:
        failing.server.shutdown()


async def test_private_addresses_are_refused_unless_allowed(
    store: JobStore, receiver: Receiver
) -> None:
    await finished_job(store, receiver.url)
    webhooks = sender(store, allow_private=False)
    (row,) = await store.webhooks_due(3)
    assert not await webhooks.deliver(row)
    await webhooks.stop()
    assert receiver.requests == []
