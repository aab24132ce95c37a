"""Run an inference worker: `python -m inference_service`."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import httpx

from inference_service.engine.selection import EngineConfigError, build_engine
from inference_service.pipeline import Pipeline
from inference_service.servicer import InferenceServicer
from inference_service.settings import WorkerSettings
from inference_service.worker import Worker
from lipsync.billing.v1 import billing_pb2_grpc
from lipsync.inference.v1 import inference_pb2, inference_pb2_grpc
from lipsync_common.config import ServerSettings
from lipsync_common.grpc_server import run_grpc_service
from lipsync_common.guarded_http import GuardedTransport
from lipsync_common.jetstream import connect, ensure_streams
from lipsync_common.logs import setup_logging
from lipsync_common.results import result_store


async def main() -> None:
    setup_logging("inference_service")
    settings = WorkerSettings.from_env()
    try:
        engine = build_engine(settings.engine, settings.torchscript_model, settings.torch_batch)
    except EngineConfigError as exc:
        raise SystemExit(str(exc)) from None
    nc, js = await connect(settings.nats_url, "inference-service")
    channel = grpc.aio.insecure_channel(settings.billing_addr)
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.limits.download_timeout_s, connect=10),
        follow_redirects=False,
        headers={"user-agent": "lipsync-worker/0.1"},
        # Resolves each host once and connects to the address it checked.
        transport=GuardedTransport(settings.allow_private_urls),
    )
    pipeline = Pipeline(
        settings,
        engine,
        billing_pb2_grpc.BillingServiceStub(channel),
        http,
        result_store(settings.results_dir),
    )
    worker = Worker(
        nc,
        js,
        pipeline,
        settings.worker_name,
        settings.heartbeat_s,
        concurrency=settings.concurrency,
    )

    async def start() -> None:
        # Readiness waits for the models: a worker that cannot render takes no job.
        await asyncio.to_thread(engine.setup)
        await ensure_streams(js)
        await worker.start()

    async def stop() -> None:
        with contextlib.suppress(Exception):
            await nc.drain()
        await http.aclose()
        await channel.close()

    def register(server: grpc.aio.Server) -> None:
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(
            InferenceServicer(settings.engine, engine, worker, pipeline), server
        )

    await run_grpc_service(
        ServerSettings.from_env("inference"),
        [inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name],
        register,
        start=start,
        stop=stop,
        drain=worker.stop,
    )


if __name__ == "__main__":
    asyncio.run(main())
