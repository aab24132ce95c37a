"""HTTP metrics are labelled by route template, method and status."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client import REGISTRY

from tests.gateway.conftest import AUTH_HEADERS


def count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("lipsync_http_requests_total", labels) or 0.0


def latency_count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("lipsync_http_request_seconds_count", labels) or 0.0


async def test_requests_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    route = "/api/v1/jobs/{id}"
    before = count(route, "GET", "404"), latency_count(route, "GET", "404")
    for _ in range(2):
        await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=AUTH_HEADERS)
    assert count(route, "GET", "404") == before[0] + 2
    assert latency_count(route, "GET", "404") == before[1] + 2


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    before = count("unmatched", "GET", "404")
    await client.get("/nope/1")
    await client.get("/nope/2")
    assert count("unmatched", "GET", "404") == before + 2


async def test_errors_are_counted_with_their_status(client: httpx.AsyncClient) -> None:
    before = count("/api/v1/lipsync-image", "POST", "401")
    await client.post("/api/v1/lipsync-image", json={})
    assert count("/api/v1/lipsync-image", "POST", "401") == before + 1


async def test_unusual_methods_are_folded(client: httpx.AsyncClient) -> None:
    before = count("unmatched", "OTHER", "404")
    await client.request("PROPFIND", "/nope")
    assert count("unmatched", "OTHER", "404") == before + 1
