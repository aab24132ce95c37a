"""Job control over real gRPC: list, cancel, delete, webhook deliveries, redeliver.

Each route with its refusals as job_service words them, another account's job
as the same 404 as an unknown one, and a session token accepted as well as a key.
"""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from lipsync.jobs.v1 import jobs_pb2
from tests.gateway.conftest import (
    ACCOUNT,
    AUTH_HEADERS,
    OTHER_ACCOUNT,
    SESSION_HEADERS,
    FakeStack,
    assert_problem,
)

IMAGE = jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="https://i/x"))
VIDEO = jobs_pb2.JobSpec(lipsync_video=jobs_pb2.LipsyncVideoInputs(video="https://v/x"))


def stored(
    stack: FakeStack,
    status: jobs_pb2.JobStatus.ValueType = jobs_pb2.JOB_STATUS_PROCESSING,
    *,
    account: str = ACCOUNT,
    spec: jobs_pb2.JobSpec = IMAGE,
    **fields: object,
) -> jobs_pb2.Job:
    return stack.jobs.add(
        jobs_pb2.Job(id=str(uuid.uuid4()), account_id=account, status=status, spec=spec, **fields)
    )


def at(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


# --- GET /api/v1/jobs ---------------------------------------------------------------


async def test_list_is_newest_first_in_pages(client: httpx.AsyncClient, stack: FakeStack) -> None:
    jobs = [stored(stack) for _ in range(3)]
    stored(stack, account=OTHER_ACCOUNT)
    first = await client.get("/api/v1/jobs", params={"limit": 2}, headers=AUTH_HEADERS)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    page = first.json()
    assert [job["id"] for job in page["data"]] == [jobs[2].id, jobs[1].id]
    assert page["data"][0]["status"] == "processing"
    assert page["data"][0]["progress"] == {"stage": "queued", "percent": 0, "etaSeconds": None}
    assert page["next_cursor"] == "at-2"
    second = await client.get(
        "/api/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}, headers=AUTH_HEADERS
    )
    last = second.json()
    assert [job["id"] for job in last["data"]] == [jobs[0].id]
    assert last["next_cursor"] is None
    request = stack.jobs.listed[-1]
    assert (request.account_id, request.limit, request.cursor) == (ACCOUNT, 2, "at-2")


async def test_list_defaults_and_filters(client: httpx.AsyncClient, stack: FakeStack) -> None:
    done = stored(stack, jobs_pb2.JOB_STATUS_COMPLETED, spec=VIDEO)
    stored(stack, jobs_pb2.JOB_STATUS_COMPLETED)
    stored(stack, jobs_pb2.JOB_STATUS_PROCESSING, spec=VIDEO)
    everything = await client.get("/api/v1/jobs", headers=AUTH_HEADERS)
    assert len(everything.json()["data"]) == 3
    assert stack.jobs.listed[-1].limit == 20
    assert stack.jobs.listed[-1].status == jobs_pb2.JOB_STATUS_UNSPECIFIED
    assert stack.jobs.listed[-1].model == ""
    filtered = await client.get(
        "/api/v1/jobs",
        params={"status": "completed", "model": "lipsync-video"},
        headers=AUTH_HEADERS,
    )
    assert [job["id"] for job in filtered.json()["data"]] == [done.id]
    assert stack.jobs.listed[-1].status == jobs_pb2.JOB_STATUS_COMPLETED
    assert stack.jobs.listed[-1].model == "lipsync-video"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": ""}, "status"),
        ({"model": "lipsync-audio"}, "model"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "x" * 501}, "cursor"),
    ],
)
async def test_list_refuses_bad_query_values_by_name(
    client: httpx.AsyncClient, stack: FakeStack, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/v1/jobs", params=params, headers=AUTH_HEADERS)
    body = assert_problem(response, 422, "invalid_parameter")
    assert [error["field"] for error in body["errors"]] == [field]  # type: ignore[union-attr]
    assert stack.jobs.listed == []


async def test_a_cursor_job_service_refuses_is_a_422_naming_cursor(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/jobs", params={"cursor": "nope"}, headers=AUTH_HEADERS)
    body = assert_problem(response, 422, "invalid_parameter")
    assert body["errors"] == [{"field": "cursor", "message": "cursor is not one this API returned"}]


async def test_list_needs_a_credential_and_job_service(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    assert_problem(await client.get("/api/v1/jobs"), 401, "unauthorized")
    stack.jobs.failures["ListJobs"] = (grpc.StatusCode.UNAVAILABLE, "down")
    assert_problem(
        await client.get("/api/v1/jobs", headers=AUTH_HEADERS), 503, "service_unavailable"
    )


# --- POST /api/v1/jobs/{id}/cancel --------------------------------------------------


async def test_cancel_answers_the_canceled_job(client: httpx.AsyncClient, stack: FakeStack) -> None:
    job = stored(stack)
    response = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=AUTH_HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["credits"], body["progress"]) == (
        job.id,
        "canceled",
        0,
        None,
    )
    again = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=AUTH_HEADERS)
    problem = assert_problem(again, 409, "job_finished")
    assert problem["detail"] == "the job has already ended; there is nothing to cancel"


@pytest.mark.parametrize(
    "status",
    [jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELED],
)
async def test_cancel_of_an_ended_job_is_409(
    client: httpx.AsyncClient, stack: FakeStack, status: jobs_pb2.JobStatus.ValueType
) -> None:
    job = stored(stack, status)
    response = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=AUTH_HEADERS)
    assert_problem(response, 409, "job_finished")


async def test_cancel_forgets_the_cached_job(client: httpx.AsyncClient, stack: FakeStack) -> None:
    # A cached ended job stays ended; what must not stay is a body from before a change.
    job = stored(stack, jobs_pb2.JOB_STATUS_FAILED)
    assert (await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)).status_code == 200
    job.status = jobs_pb2.JOB_STATUS_PROCESSING  # a record the cache has not seen
    assert (await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=AUTH_HEADERS)).json()[
        "status"
    ] == "canceled"
    reads = len(stack.jobs.reads)
    body = (await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)).json()
    assert body["status"] == "canceled"
    assert len(stack.jobs.reads) == reads + 1


# --- DELETE /api/v1/jobs/{id} -------------------------------------------------------


async def test_delete_answers_204_and_the_job_reads_deleted_at_once(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = stored(stack, jobs_pb2.JOB_STATUS_COMPLETED, output_url="http://testserver/files/o.mp4")
    before = (await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)).json()
    assert before["output"] and before["deletedAt"] is None
    response = await client.delete(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)
    assert response.status_code == 204
    assert response.content == b""
    # The ended job was cached; this replica dropped it at once.
    after = (await client.get(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)).json()
    assert after["output"] is None
    assert after["deletedAt"].endswith("Z")


async def test_delete_of_a_processing_job_is_409(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = stored(stack)
    response = await client.delete(f"/api/v1/jobs/{job.id}", headers=AUTH_HEADERS)
    problem = assert_problem(response, 409, "job_processing")
    assert problem["detail"] == "the job is still processing; cancel it first"


# --- webhook deliveries -------------------------------------------------------------


async def test_deliveries_are_listed_with_their_times_and_nulls(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = stored(stack, jobs_pb2.JOB_STATUS_COMPLETED, webhook="https://h.example.com/x")
    stack.jobs.deliveries[job.id] = [
        jobs_pb2.WebhookDelivery(
            attempt=1, at=at(1_700_000_000), error="timed out after 10 s",
            next_attempt_at=at(1_700_000_005, 500_000_000),
        ),
        jobs_pb2.WebhookDelivery(
            attempt=2, at=at(1_700_000_005, 600_000_000), status_code=204, latency_ms=42
        ),
    ]  # fmt: skip
    response = await client.get(f"/api/v1/jobs/{job.id}/webhook-deliveries", headers=AUTH_HEADERS)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": [
            {
                "attempt": 1,
                "at": "2023-11-14T22:13:20Z",
                "statusCode": None,
                "latencyMs": None,
                "error": "timed out after 10 s",
                "nextAttemptAt": "2023-11-14T22:13:25.500Z",
            },
            {
                "attempt": 2,
                "at": "2023-11-14T22:13:25.600Z",
                "statusCode": 204,
                "latencyMs": 42,
                "error": "",
                "nextAttemptAt": None,
            },
        ],
        "delivered": True,
    }


async def test_a_job_without_attempts_has_none_and_is_not_delivered(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = stored(stack)
    response = await client.get(f"/api/v1/jobs/{job.id}/webhook-deliveries", headers=AUTH_HEADERS)
    assert response.json() == {"data": [], "delivered": False}


async def test_redeliver_is_202(client: httpx.AsyncClient, stack: FakeStack) -> None:
    job = stored(stack, jobs_pb2.JOB_STATUS_FAILED, webhook="https://h.example.com/x")
    path = f"/api/v1/jobs/{job.id}/webhook-deliveries/redeliver"
    response = await client.post(path, headers=AUTH_HEADERS)
    assert response.status_code == 202, response.text
    assert response.json() == {"id": job.id, "status": "redelivering"}
    assert stack.jobs.redelivered == [job.id]


async def test_redeliver_refusals_are_409s_with_job_services_reason(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    no_hook = stored(stack, jobs_pb2.JOB_STATUS_COMPLETED)
    running = stored(stack, webhook="https://h.example.com/x")
    for job, code in ((no_hook, "no_webhook"), (running, "job_processing")):
        path = f"/api/v1/jobs/{job.id}/webhook-deliveries/redeliver"
        assert_problem(await client.post(path, headers=AUTH_HEADERS), 409, code)
    assert stack.jobs.redelivered == []


# --- what every job control route shares ---------------------------------------------

ROUTES = [
    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("DELETE", "/api/v1/jobs/{id}"),
    ("GET", "/api/v1/jobs/{id}/webhook-deliveries"),
    ("POST", "/api/v1/jobs/{id}/webhook-deliveries/redeliver"),
]
METHODS = {
    "/api/v1/jobs/{id}/cancel": "CancelJob",
    "/api/v1/jobs/{id}": "DeleteJob",
    "/api/v1/jobs/{id}/webhook-deliveries": "ListWebhookDeliveries",
    "/api/v1/jobs/{id}/webhook-deliveries/redeliver": "RedeliverWebhook",
}


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_unknown_other_accounts_and_non_uuid_jobs_are_the_same_404(
    client: httpx.AsyncClient, stack: FakeStack, method: str, route: str
) -> None:
    theirs = stored(
        stack, jobs_pb2.JOB_STATUS_COMPLETED, account=OTHER_ACCOUNT, webhook="https://h/x"
    )
    answers = []
    for job_id in (theirs.id, str(uuid.uuid4()), "not-a-uuid"):
        response = await client.request(method, route.format(id=job_id), headers=AUTH_HEADERS)
        answers.append(assert_problem(response, 404, "not_found"))
    assert answers[0] == answers[1] == answers[2]
    assert stack.jobs.jobs[theirs.id].status == jobs_pb2.JOB_STATUS_COMPLETED


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_a_session_token_is_accepted(
    client: httpx.AsyncClient, stack: FakeStack, method: str, route: str
) -> None:
    job = stored(stack, jobs_pb2.JOB_STATUS_COMPLETED, webhook="https://h.example.com/x")
    if route.endswith("/cancel"):
        job.status = jobs_pb2.JOB_STATUS_PROCESSING
    response = await client.request(method, route.format(id=job.id), headers=SESSION_HEADERS)
    assert response.status_code in (200, 202, 204), response.text


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_no_credential_is_401(client: httpx.AsyncClient, method: str, route: str) -> None:
    response = await client.request(method, route.format(id=uuid.uuid4()))
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_job_service_failures_map_to_503_and_500(
    client: httpx.AsyncClient, stack: FakeStack, method: str, route: str
) -> None:
    job = stored(stack, jobs_pb2.JOB_STATUS_COMPLETED, webhook="https://h.example.com/x")
    path = route.format(id=job.id)
    stack.jobs.failures[METHODS[route]] = (grpc.StatusCode.UNAVAILABLE, "restarting")
    assert_problem(
        await client.request(method, path, headers=AUTH_HEADERS), 503, "service_unavailable"
    )
    # A precondition job_service never names for this call is not a 409 the client can act on.
    stack.jobs.failures[METHODS[route]] = (grpc.StatusCode.FAILED_PRECONDITION, "mystery")
    response = await client.request(method, path, headers=AUTH_HEADERS)
    assert_problem(response, 500, "internal_error")
    assert "mystery" not in response.text


async def test_get_job_takes_a_session_token(client: httpx.AsyncClient, stack: FakeStack) -> None:
    job = stored(stack)
    response = await client.get(f"/api/v1/jobs/{job.id}", headers=SESSION_HEADERS)
    assert response.status_code == 200
    assert response.json()["id"] == job.id


async def test_a_session_creates_a_job_as_the_console_does(client: httpx.AsyncClient) -> None:
    body = {"formState": {"image": "https://c.example.com/i.png", "audio": "https://c/a.mp3"}}
    response = await client.post("/api/v1/lipsync-image", json=body, headers=SESSION_HEADERS)
    assert response.status_code == 202, response.text
