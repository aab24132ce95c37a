"""Run one gRPC service process: health, reflection, metrics, graceful stop.

A service hands in how to register its servicers and what to start and stop
around them; this module does the rest the same way for every service:

* the standard health service says NOT_SERVING until `start` has finished and
  again as soon as SIGTERM arrives, so Kubernetes stops sending traffic before
  the server drains;
* server reflection lists the service for grpcurl and friends;
* Prometheus metrics are served over HTTP;
* SIGTERM or SIGINT runs `drain`, stops the server with a grace period, then
  runs `stop`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lipsync_common.config import ServerSettings
from lipsync_common.heap import settle_after_startup
from lipsync_common.metrics import MetricsInterceptor, serve_metrics

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


async def run_grpc_service(
    settings: ServerSettings,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    start: Hook | None = None,
    stop: Hook | None = None,
    drain: Hook | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. `service_names` are full proto names.

    On a signal: health turns NOT_SERVING, `drain` runs while the server still
    answers (a worker finishes its current job there, and liveness probes keep
    passing), the server stops with its grace period, then `stop` runs.
    """
    server = grpc.aio.server(interceptors=[MetricsInterceptor()])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    register(server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    server.add_insecure_port(settings.grpc_listen)
    serve_metrics(settings.metrics_addr)
    await server.start()
    log.info(
        "listening",
        extra={"fields": {"grpc": settings.grpc_listen, "metrics": settings.metrics_addr}},
    )

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    if start is not None:
        await start()
    settle_after_startup()
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("ready")

    await stopping.wait()
    log.info("draining")
    await health_servicer.enter_graceful_shutdown()
    if drain is not None:
        await drain()
    await server.stop(settings.grace_seconds)
    if stop is not None:
        await stop()
    log.info("stopped")
