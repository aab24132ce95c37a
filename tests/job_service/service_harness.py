"""A real job_service servicer over real gRPC, on a real JetStream and SQLite.

Everything the servicer acts through is the production object: the outbox,
billing's funds check (a real billing servicer), the canceler, the retention
sweeper over a results folder, the progress board. Only the webhook sender is
left out: `wakes` counts how often it would have been woken.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from nats.aio.client import Client
from nats.js import JetStreamContext

from job_service.cancels import Canceler
from job_service.endings import Endings
from job_service.funds import FundsCheck
from job_service.outbox import Outbox
from job_service.progress import ProgressBoard
from job_service.representation import job_proto
from job_service.retention import Retention
from job_service.servicer import JobControl, JobServicer
from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import jobs_pb2_grpc
from lipsync_common.jetstream import (
    JOBS_STREAM,
    WORKER_CONSUMER,
    connect,
    ensure_streams,
    ensure_worker_consumer,
)
from lipsync_common.results import ResultStore
from tests.billing_service.billing_harness import BillingHarness


@dataclass
class Wakes:
    """Stands in for the webhook sender: counts its wake-ups."""

    count: int = 0
    notified: list[JobRow] = field(default_factory=list)

    def wake(self) -> None:
        self.count += 1

    def notify(self, row: JobRow) -> None:
        self.notified.append(row)


@dataclass
class JobService:
    stub: jobs_pb2_grpc.JobServiceStub
    # The workers' queue, bound to their durable consumer.
    queue: object
    store: JobStore
    nc: Client
    js: JetStreamContext
    results: ResultStore
    progress: ProgressBoard
    retention: Retention
    wakes: Wakes


@contextlib.asynccontextmanager
async def running_job_service(
    tmp_path: Path, nats_url: str, billing: BillingHarness, max_processing: int, ttl_s: int = 60
) -> AsyncIterator[JobService]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    nc, js = await connect(nats_url, "test")
    await ensure_streams(js)
    await ensure_worker_consumer(js)
    render = functools.partial(job_proto, public_url="https://api", signing_key=b"k", ttl_s=ttl_s)
    server = grpc.aio.server()
    outbox = Outbox(store, js, interval_s=60)
    outbox.start()
    results = ResultStore(tmp_path / "results")
    progress = ProgressBoard()
    await progress.start(nc)
    wakes = Wakes()
    endings = Endings(nc, progress, wakes)
    retention = Retention(store, results, ttl_s=ttl_s)
    servicer = JobServicer(
        store,
        outbox,
        render,
        FundsCheck(billing.stub, fresh_s=0),
        max_processing=max_processing,
        control=JobControl(
            nc=nc,
            canceler=Canceler(nc, js, store, on_finished=endings.ended),
            retention=retention,
            progress=progress,
            wake_webhooks=wakes.wake,
        ),
    )
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    queue = await js.pull_subscribe_bind(WORKER_CONSUMER, stream=JOBS_STREAM)
    try:
        yield JobService(
            jobs_pb2_grpc.JobServiceStub(channel),
            queue,
            store,
            nc,
            js,
            results,
            progress,
            retention,
            wakes,
        )
    finally:
        await channel.close()
        await server.stop(None)
        await outbox.stop()
        await progress.stop()
        # nats-py's close can meet the reset of a connection whose server a test restarted.
        with contextlib.suppress(ConnectionError):
            await nc.close()
        await store.close()
