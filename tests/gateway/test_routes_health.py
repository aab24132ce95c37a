"""Liveness, readiness over the standard gRPC health service, and the request counter."""

from __future__ import annotations

import httpx
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY, generate_latest

from gateway.clients import SERVICE_NAMES
from tests.gateway.conftest import FakeStack, assert_problem


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_every_backend_serves(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "services": {"auth": "SERVING", "billing": "SERVING", "jobs": "SERVING"},
    }


async def test_not_ready_when_a_backend_is_down(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    await stack.stop("billing")
    response = await client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["detail"] == "not ready: billing not serving"
    assert body["services"]["billing"] == "UNAVAILABLE"
    assert body["services"]["auth"] == "SERVING"


async def test_not_ready_when_a_backend_says_not_serving(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    await stack.health["jobs"].set(
        SERVICE_NAMES["jobs"], health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await stack.health["auth"].enter_graceful_shutdown()
    body = assert_problem(await client.get("/readyz"), 503, "not_ready")
    assert body["detail"] == "not ready: auth, jobs not serving"
    assert body["services"] == {"auth": "NOT_SERVING", "billing": "SERVING", "jobs": "NOT_SERVING"}


async def test_requests_are_counted_and_metrics_are_not_on_the_api_port(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")
    # `python -m gateway` serves the registry on LIPSYNC_GATEWAY_METRICS_ADDR (test_main).
    exposition = generate_latest(REGISTRY).decode()
    assert 'lipsync_http_requests_total{method="GET",route="/healthz",status="200"}' in exposition
    assert (await client.get("/metrics")).status_code == 404
