"""Liveness and readiness of the gateway. Its /metrics is served on a port of its
own (LIPSYNC_GATEWAY_METRICS_ADDR, gateway/__main__.py), never the API port."""

from __future__ import annotations

import asyncio

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import openapi
from gateway.clients import SERVICE_NAMES, Backends
from gateway.problems import Problem

# Readiness is polled often; a backend slower than this counts as not ready.
HEALTH_TIMEOUT_S = 1.0


async def service_status(channel: grpc.aio.Channel, service: str) -> str:
    """The health status name of `service`, or why it could not be read."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=HEALTH_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def router(backends: Backends) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/readyz",
        summary="Readiness: auth, billing and jobs all report SERVING.",
        responses=openapi.problem_responses({503: "a backend is not serving"}),
    )
    async def readyz() -> JSONResponse:
        names = list(backends.channels)
        statuses = await asyncio.gather(
            *(service_status(backends.channels[name], SERVICE_NAMES[name]) for name in names)
        )
        services = dict(zip(names, statuses, strict=True))
        down = [name for name, status in services.items() if status != "SERVING"]
        if down:
            raise Problem(
                503,
                "not_ready",
                f"not ready: {', '.join(down)} not serving",
                extra={"services": services},
            )
        return JSONResponse({"status": "ok", "services": services})

    return api
