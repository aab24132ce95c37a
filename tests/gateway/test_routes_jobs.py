"""Job endpoints over real gRPC servers: auth, validation, job_service's refusals, reads."""

from __future__ import annotations

import json
import uuid

import grpc
import httpx
import pytest

from lipsync.jobs.v1 import jobs_pb2
from tests.gateway.conftest import (
    ACCOUNT,
    AUTH_HEADERS,
    OTHER_ACCOUNT,
    OTHER_KEY,
    FakeStack,
    assert_problem,
)

IMAGE_BODY = {
    "formState": {
        "image": "https://cdn.example.com/face.png",
        "audio": "https://cdn.example.com/voice.mp3",
    }
}


async def post(
    client: httpx.AsyncClient,
    endpoint: str,
    body: object,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/api/v1/{endpoint}", content=json.dumps(body), headers={**AUTH_HEADERS, **(headers or {})}
    )


async def test_create_image_job(client: httpx.AsyncClient, stack: FakeStack) -> None:
    response = await post(client, "lipsync-image", IMAGE_BODY)
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"id": body["id"], "status": "processing"}
    uuid.UUID(body["id"])
    assert response.headers["location"] == f"/api/v1/jobs/{body['id']}"

    [created] = stack.jobs.created
    assert created.account_id == ACCOUNT
    assert created.spec == jobs_pb2.JobSpec(
        lipsync_image=jobs_pb2.LipsyncImageInputs(
            image="https://cdn.example.com/face.png", audio="https://cdn.example.com/voice.mp3"
        ),
        resolution=jobs_pb2.RESOLUTION_480P,
    )
    assert len(created.request_fingerprint) == 64
    # The funds check is job_service's (it asks billing); the gateway asks nobody.
    assert stack.billing.quotes == []


async def test_create_multi_job_passes_order_model_and_seed(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    body = {
        "webhook": "https://hooks.example.com/done",
        "formState": {
            "image": "https://cdn.example.com/two.png",
            "left_audio": "https://cdn.example.com/l.mp3",
            "right_audio": "https://cdn.example.com/r.mp3",
            "order": "meanwhile",
            "resolution": "720p",
            "seed": 7,
        },
    }
    response = await post(client, "lipsync-image-multi", body, {"Idempotency-Key": "abc"})
    assert response.status_code == 202
    [created] = stack.jobs.created
    assert created.spec.WhichOneof("inputs") == "lipsync_image_multi"
    assert created.spec.lipsync_image_multi.order == jobs_pb2.ORDER_MEANWHILE
    assert created.spec.resolution == jobs_pb2.RESOLUTION_720P
    assert created.spec.seed == 7
    assert created.webhook == "https://hooks.example.com/done"
    assert created.idempotency_key == "abc"


async def test_create_video_job(client: httpx.AsyncClient, stack: FakeStack) -> None:
    body = {
        "formState": {
            "video": "https://c.example.com/v.mp4",
            "audio": "https://c.example.com/a.wav",
        }
    }
    response = await post(client, "lipsync-video", body)
    assert response.status_code == 202
    assert stack.jobs.created[0].spec.lipsync_video == jobs_pb2.LipsyncVideoInputs(
        video="https://c.example.com/v.mp4", audio="https://c.example.com/a.wav"
    )


async def test_insufficient_credits_is_job_services_answer(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    shortfall = "insufficient credits: need 10, have 0"
    stack.jobs.refusal = (grpc.StatusCode.FAILED_PRECONDITION, shortfall)
    response = await post(client, "lipsync-image", IMAGE_BODY)
    body = assert_problem(response, 402, "insufficient_credits")
    assert body["detail"] == shortfall
    assert body["title"] == "Payment Required"


async def test_an_account_at_its_processing_cap_gets_429(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    reason = "the account already has 10 jobs in processing"
    stack.jobs.refusal = (grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
    response = await post(client, "lipsync-image", IMAGE_BODY)
    body = assert_problem(response, 429, "too_many_processing_jobs")
    assert body["detail"] == f"{reason}; wait for one to finish"
    assert response.headers["Retry-After"] == "10"


async def test_same_idempotency_key_and_body_returns_the_same_job(
    client: httpx.AsyncClient,
) -> None:
    first = await post(client, "lipsync-image", IMAGE_BODY, {"Idempotency-Key": "k-1"})
    # The same body with other key order and spacing is the same request.
    reordered = {"formState": dict(reversed(list(IMAGE_BODY["formState"].items())))}
    second = await post(client, "lipsync-image", reordered, {"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]


async def test_idempotency_key_reused_with_another_body(client: httpx.AsyncClient) -> None:
    assert (
        await post(client, "lipsync-image", IMAGE_BODY, {"Idempotency-Key": "k-2"})
    ).status_code == 202
    other = {"formState": {**IMAGE_BODY["formState"], "prompt": "different"}}
    response = await post(client, "lipsync-image", other, {"Idempotency-Key": "k-2"})
    assert_problem(response, 409, "idempotency_key_reused")


async def test_bad_idempotency_key_header(client: httpx.AsyncClient) -> None:
    response = await post(client, "lipsync-image", IMAGE_BODY, {"Idempotency-Key": "x" * 256})
    body = assert_problem(response, 422, "invalid_parameter")
    assert body["errors"] == [
        {
            "field": "Idempotency-Key",
            "message": "Idempotency-Key must be 1 to 255 printable ASCII characters",
        }
    ]


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"", b'"x"'])
async def test_body_not_a_json_object(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/api/v1/lipsync-image", content=raw, headers=AUTH_HEADERS)
    assert_problem(response, 400, "invalid_json")


async def test_oversize_body(client: httpx.AsyncClient, stack: FakeStack) -> None:
    body = {"formState": {**IMAGE_BODY["formState"], "prompt": "x" * 70_000}}
    response = await post(client, "lipsync-image", body)
    assert_problem(response, 413, "payload_too_large")
    assert stack.jobs.created == []


async def test_oversize_chunked_body_without_content_length(client: httpx.AsyncClient) -> None:
    async def chunks():  # a streamed body has no Content-Length
        for _ in range(5):
            yield b" " * 20_000

    response = await client.post("/api/v1/lipsync-image", content=chunks(), headers=AUTH_HEADERS)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")


async def test_validation_errors_are_listed_with_contract_field_names(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    body = {
        "webhook": "http://hooks.example.com/x",
        "formState": {
            "image": "ftp://cdn.example.com/face.png",
            "seed": True,
            "resolution": "1080p",
            "style": "anime",
        },
    }
    response = await post(client, "lipsync-image", body)
    problem = assert_problem(response, 422, "invalid_parameter")
    assert problem["title"] == "Unprocessable Content"
    fields = [error["field"] for error in problem["errors"]]
    assert fields == [
        "webhook",
        "formState.image",
        "formState.audio",
        "formState.resolution",
        "formState.seed",
        "formState.style",
    ]
    assert problem["errors"][-1]["message"] == "formState.style is an unknown parameter"
    assert problem["detail"] == problem["errors"][0]["message"]
    assert stack.jobs.created == []


async def test_missing_audio(client: httpx.AsyncClient) -> None:
    body = {"formState": {"image": "https://cdn.example.com/face.png"}}
    problem = assert_problem(await post(client, "lipsync-image", body), 422, "invalid_parameter")
    assert problem["errors"] == [
        {"field": "formState.audio", "message": "formState.audio is required"}
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer sk_unknown_" + "x" * 32},
        {"Authorization": "Bearer " + "x" * 600},
    ],
    ids=["missing", "not-bearer", "empty", "unknown", "too-long"],
)
async def test_unauthenticated_requests_get_the_same_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/lipsync-image", content=json.dumps(IMAGE_BODY), headers=headers
    )
    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert body == {
        "type": "http://testserver/api/v1/errors#unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "code": "unauthorized",
        "detail": "a valid API key is required: Authorization: Bearer <key>",
    }


async def test_authentication_comes_before_body_checks(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/lipsync-image", content=b"[")
    assert_problem(response, 401, "unauthorized")


async def test_billing_down_behind_job_service_is_a_503(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    stack.jobs.refusal = (grpc.StatusCode.UNAVAILABLE, "billing is unavailable")
    response = await post(client, "lipsync-image", IMAGE_BODY)
    body = assert_problem(response, 503, "service_unavailable")
    assert "Traceback" not in response.text
    assert body["detail"] == "the jobs service is unavailable; retry shortly"


async def test_jobs_down_is_a_503(client: httpx.AsyncClient, stack: FakeStack) -> None:
    await stack.stop("jobs")
    assert_problem(await post(client, "lipsync-image", IMAGE_BODY), 503, "service_unavailable")
    response = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=AUTH_HEADERS)
    assert_problem(response, 503, "service_unavailable")


async def test_get_job_answers_the_public_job_json(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = jobs_pb2.Job(
        id=str(uuid.uuid4()),
        account_id=ACCOUNT,
        spec=jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="https://i/x")),
        status=jobs_pb2.JOB_STATUS_COMPLETED,
        output_url="http://testserver/files/x.mp4?expires=1&sig=s",
        execution_time_ms=1234,
        timings={"download": 10, "inference": 1000},
        credits=20,
    )
    stack.jobs.add(job)
    response = await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert {k: body[k] for k in ("id", "model", "status", "output", "error")} == {
        "id": job.id,
        "model": "lipsync-image",
        "status": "completed",
        "output": "http://testserver/files/x.mp4?expires=1&sig=s",
        "error": "",
    }
    assert body["executionTime"] == 1234
    assert body["timings"] == {"download": 10, "inference": 1000}
    assert body["credits"] == 20


async def test_a_new_job_reads_back_as_processing(client: httpx.AsyncClient) -> None:
    job_id = (await post(client, "lipsync-image", IMAGE_BODY)).json()["id"]
    body = (await client.get(f"/api/v1/jobs/{job_id}", headers=AUTH_HEADERS)).json()
    assert body["status"] == "processing"
    assert body["output"] is None
    assert body["executionTime"] is None
    assert body["timings"] is None
    assert body["credits"] is None


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=AUTH_HEADERS)
    assert_problem(response, 404, "not_found")


async def test_job_of_another_account_is_the_same_404(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = stack.jobs.add(jobs_pb2.Job(id=str(uuid.uuid4()), account_id=OTHER_ACCOUNT))
    mine = await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)
    unknown = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=AUTH_HEADERS)
    assert_problem(mine, 404, "not_found")
    assert mine.json() == unknown.json()
    theirs = await client.get(
        f"/api/v1/jobs/{job.id}", headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert theirs.status_code == 200


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "..", "%00"])
async def test_non_uuid_job_id_is_404(
    client: httpx.AsyncClient, stack: FakeStack, job_id: str
) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}", headers=AUTH_HEADERS)
    assert_problem(response, 404, "not_found")


async def test_get_job_requires_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/jobs/{uuid.uuid4()}")
    assert_problem(response, 401, "unauthorized")


async def test_an_ended_job_is_read_once_and_a_processing_one_every_time(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    def stored(status: jobs_pb2.JobStatus.ValueType) -> jobs_pb2.Job:
        return stack.jobs.add(jobs_pb2.Job(id=str(uuid.uuid4()), account_id=ACCOUNT, status=status))

    ended, running = stored(jobs_pb2.JOB_STATUS_FAILED), stored(jobs_pb2.JOB_STATUS_PROCESSING)
    first = {job.id: (await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)).content
             for job in (ended, running)}  # fmt: skip
    # job_service's record changes behind the gateway's back.
    ended.error, running.error = "changed", "changed"
    again = {job.id: (await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)).json()
             for job in (ended, running)}  # fmt: skip
    assert (
        again[ended.id]["error"] == ""
        and first[ended.id] == json.dumps(again[ended.id], separators=(",", ":")).encode()
    )
    assert again[running.id]["error"] == "changed"
