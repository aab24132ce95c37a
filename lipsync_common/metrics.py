"""Prometheus metrics: gRPC request counts and latencies, served over HTTP.

Domain counters (jobs by state, credits charged) are defined by the service
that owns the domain; this module holds only what every server shares.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

from lipsync_common.config import split_host_port

GRPC_REQUESTS = Counter(
    "lipsync_grpc_requests_total",
    "gRPC requests handled, by method and status code.",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "lipsync_grpc_request_seconds",
    "gRPC request latency in seconds, by method and status code.",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def serve_metrics(addr: str) -> None:
    """Expose `/metrics` on `addr` from a daemon thread."""
    host, port = split_host_port(addr)
    start_http_server(port, addr=host)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary-unary call by method and final code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                response = await inner(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                name = code.name if isinstance(code, grpc.StatusCode) else str(code)
                GRPC_REQUESTS.labels(method, name).inc()
                GRPC_LATENCY.labels(method, name).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
