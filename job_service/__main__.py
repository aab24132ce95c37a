"""Run job_service: `python -m job_service`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import grpc

from job_service.cancels import Canceler
from job_service.endings import Endings
from job_service.events import EventConsumer
from job_service.funds import FundsCheck
from job_service.outbox import Outbox
from job_service.progress import ProgressBoard
from job_service.reaper import Reaper
from job_service.representation import job_proto
from job_service.retention import Retention
from job_service.servicer import JobControl, JobServicer
from job_service.settings import JobSettings
from job_service.signing import SecretSource
from job_service.store import JobStore
from job_service.webhooks import RetrySchedule, WebhookSender
from lipsync.billing.v1 import billing_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common.config import ServerSettings, service_addr
from lipsync_common.grpc_server import run_grpc_service
from lipsync_common.jetstream import connect, ensure_streams
from lipsync_common.logs import setup_logging
from lipsync_common.results import result_store
from lipsync_common.signing import load_signing_key
from lipsync_common.uploads import UploadSweep, upload_store, upload_ttl_s, uploads_dir

log = logging.getLogger("job_service")


async def main() -> None:
    setup_logging("job_service")
    settings = JobSettings.from_env()
    store = JobStore(settings.database_url)
    await store.open()
    nc, js = await connect(settings.nats_url, "job-service")
    render = functools.partial(
        job_proto,
        public_url=settings.public_url,
        signing_key=load_signing_key(),
        ttl_s=settings.result_ttl_s,
    )
    # Webhooks are signed with each account's secret, which auth_service owns;
    # billing says whether an account can pay for a new job.
    auth_channel = grpc.aio.insecure_channel(service_addr("auth"))
    billing_channel = grpc.aio.insecure_channel(service_addr("billing"))
    outbox = Outbox(store, js, interval_s=settings.outbox_interval_s)
    webhooks = WebhookSender(
        store,
        render,
        timeout_s=settings.webhook_timeout_s,
        secrets=SecretSource(auth_channel),
        allow_private=settings.allow_private_urls,
        schedule=RetrySchedule(window_s=settings.webhook_retry_window_s),
    )
    progress = ProgressBoard()
    endings = Endings(nc, progress, webhooks)
    retention = Retention(
        store,
        result_store(settings.results_dir),
        ttl_s=settings.result_ttl_s,
        interval_s=settings.retention_interval_s,
    )
    servicer = JobServicer(
        store,
        outbox,
        render,
        funds=FundsCheck(billing_pb2_grpc.BillingServiceStub(billing_channel)),
        max_processing=settings.max_processing_jobs,
        control=JobControl(
            nc=nc,
            canceler=Canceler(nc, js, store, on_finished=endings.ended),
            retention=retention,
            progress=progress,
            wake_webhooks=webhooks.wake,
        ),
    )
    consumer = EventConsumer(js, store, on_finished=endings.ended)
    # Expired uploads are deleted here, beside the results' retention: one sweeper
    # per deployment that already owns storage lifecycle (lipsync_common/uploads.py).
    upload_sweep = UploadSweep(upload_store(uploads_dir()), upload_ttl_s())
    reaper = Reaper(js)

    async def start() -> None:
        await ensure_streams(js)
        await progress.start(nc)
        await consumer.start()
        await reaper.start()
        webhooks.start()
        outbox.start()
        await retention.expire_objects()
        retention.start()
        await upload_sweep.start()

    async def stop() -> None:
        await retention.stop()
        await upload_sweep.stop()
        await outbox.stop()
        await consumer.stop()
        await reaper.stop()
        await progress.stop()
        await webhooks.stop()
        await auth_channel.close()
        await billing_channel.close()
        with contextlib.suppress(Exception):
            await nc.drain()
        await store.close()

    def register(server: grpc.aio.Server) -> None:
        jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)

    await run_grpc_service(
        ServerSettings.from_env("jobs"),
        [jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name],
        register,
        start=start,
        stop=stop,
    )


if __name__ == "__main__":
    asyncio.run(main())
