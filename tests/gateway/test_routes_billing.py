"""Estimates and the price list: REST in, the inference and billing calls out."""

from __future__ import annotations

import grpc
import httpx

from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import jobs_pb2
from tests.gateway.conftest import AUTH_HEADERS, FakeStack, assert_problem

IMAGE = "https://cdn.example.com/face.png"
AUDIO = "https://cdn.example.com/voice.mp3"


async def estimate(client: httpx.AsyncClient, body: object) -> httpx.Response:
    return await client.post("/api/v1/estimate", json=body, headers=AUTH_HEADERS)


async def test_estimate_probes_the_spec_and_quotes_its_durations(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    body = {"model": "lipsync-image", "formState": {"image": IMAGE, "audio": AUDIO}}
    stack.inference.durations = [7.5]
    response = await estimate(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"billed_seconds": 8, "credits": 16}
    spec = jobs_pb2.JobSpec(
        lipsync_image=jobs_pb2.LipsyncImageInputs(image=IMAGE, audio=AUDIO),
        resolution=jobs_pb2.RESOLUTION_480P,
    )
    assert [probe.spec for probe in stack.inference.probed] == [spec]
    assert stack.billing.quotes == [billing_pb2.Usage(spec=spec, duration_seconds=[7.5])]


async def test_estimate_body_errors_are_the_job_bodys(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    response = await estimate(client, {"model": "lipsync-image", "formState": {"image": IMAGE}})
    problem = assert_problem(response, 422, "invalid_parameter")
    assert problem["errors"] == [
        {"field": "formState.audio", "message": "formState.audio is required"}
    ]
    unknown = assert_problem(await estimate(client, {"model": "x"}), 422, "invalid_parameter")
    assert [e["field"] for e in unknown["errors"]] == ["model"]
    assert stack.inference.probed == []


async def test_unreadable_media_is_a_422_on_form_state(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    stack.inference.unreadable = "the audio could not be decoded"
    body = {"model": "lipsync-image", "formState": {"image": IMAGE, "audio": AUDIO}}
    problem = assert_problem(await estimate(client, body), 422, "invalid_parameter")
    assert problem["errors"] == [
        {"field": "formState", "message": "the audio could not be decoded"}
    ]


async def test_estimate_without_inference_is_a_503(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    await stack.stop("inference")
    body = {"model": "lipsync-image", "formState": {"image": IMAGE, "audio": AUDIO}}
    response = await estimate(client, body)
    assert_problem(response, 503, "service_unavailable")
    assert grpc.StatusCode.UNAVAILABLE.name not in response.text
