"""`Prefer: wait=N` served from job_service's notices over a real nats-server.

A notice on `lipsync.notices.ended.<id>` wakes a waiting request before its N
seconds; without one the request answers when N seconds have passed (GET 200,
create 202 with the full job). A `deleted` notice drops the job from the
cache of ended jobs. The gateway serves while NATS is down and starts hearing
notices once it is up, and again after a NATS restart.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from typing import Any

import grpc
import httpx
import nats
import pytest
from nats.aio.client import Client

from gateway import routes_jobs
from gateway.app import create_app
from gateway.job_notices import JobNotices
from gateway.settings import GatewaySettings
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common import notices
from tests.conftest import NatsProcess
from tests.gateway.conftest import (
    ACCOUNT,
    AUTH_HEADERS,
    FakeClock,
    FakeStack,
    assert_problem,
)
from tests.integration.harness import free_port

IMAGE_BODY = {
    "formState": {
        "image": "https://cdn.example.com/face.png",
        "audio": "https://cdn.example.com/voice.mp3",
    }
}


@dataclass
class Gateway:
    http: httpx.AsyncClient
    notices: JobNotices
    publisher: Client


async def _gateway(
    stack: FakeStack, settings: GatewaySettings, clock: FakeClock, url: str
) -> AsyncIterator[Gateway]:
    listener = JobNotices(url)
    listener.start()
    await asyncio.wait_for(listener.subscribed.wait(), 10)
    publisher = await nats.connect(url)
    app = create_app(settings, stack.backends, notices=listener, monotonic=clock, wall_clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Gateway(http, listener, publisher)
    await publisher.close()
    await listener.close()


@pytest.fixture
async def gateway(
    stack: FakeStack, settings: GatewaySettings, clock: FakeClock, nats_server: str
) -> AsyncIterator[Gateway]:
    async for value in _gateway(stack, settings, clock, nats_server):
        yield value


def processing_job(stack: FakeStack) -> jobs_pb2.Job:
    return stack.jobs.add(
        jobs_pb2.Job(
            id=str(uuid.uuid4()),
            account_id=ACCOUNT,
            status=jobs_pb2.JOB_STATUS_PROCESSING,
            spec=jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="https://i")),
        )
    )


async def until(condition: Any, timeout_s: float = 10) -> None:
    """Wait (in the test only) until `condition()` holds."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await call
    return response, loop.time() - started


def wait_for(seconds: int) -> dict[str, str]:
    return {**AUTH_HEADERS, "Prefer": f"wait={seconds}"}


def end(job: jobs_pb2.Job) -> None:
    """What job_service stores before it sends the `ended` notice."""
    job.status = jobs_pb2.JOB_STATUS_COMPLETED
    job.output_url = "http://testserver/files/out.mp4?sig=s"
    job.credits = 10
    job.ClearField("progress")


async def test_an_ended_notice_wakes_a_waiting_get(gateway: Gateway, stack: FakeStack) -> None:
    job = processing_job(stack)
    request = asyncio.create_task(
        timed(gateway.http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(30)))
    )
    # The waiter is registered before the first read, so once it happened the notice counts.
    await until(lambda: stack.jobs.reads.count(job.id) == 1)
    end(job)
    await notices.publish(gateway.publisher, notices.ENDED, job.id)
    response, elapsed = await request
    assert elapsed < 5
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=30"
    body = response.json()
    assert (body["status"], body["credits"], body["progress"]) == ("completed", 10, None)
    # Read again past the cache once woken, and never polled in between.
    assert stack.jobs.reads.count(job.id) == 2


async def test_a_notice_of_another_job_wakes_nobody(gateway: Gateway, stack: FakeStack) -> None:
    job = processing_job(stack)
    request = asyncio.create_task(
        timed(gateway.http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(1)))
    )
    await until(lambda: stack.jobs.reads.count(job.id) == 1)
    await notices.publish(gateway.publisher, notices.ENDED, str(uuid.uuid4()))
    response, elapsed = await request
    assert elapsed >= 0.95
    assert response.json()["status"] == "processing"


async def test_without_a_notice_get_answers_200_after_its_wait(
    gateway: Gateway, stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each read has its own short deadline; the wait outlasts it.
    monkeypatch.setattr(routes_jobs, "RPC_TIMEOUT_S", 0.5)
    job = processing_job(stack)
    response, elapsed = await timed(gateway.http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(1)))
    assert 0.95 <= elapsed < 3
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=1"
    body = response.json()
    assert body["status"] == "processing"
    assert body["progress"] == {"stage": "queued", "percent": 0, "etaSeconds": None}
    assert stack.jobs.reads.count(job.id) == 2


async def test_an_ended_job_answers_at_once(gateway: Gateway, stack: FakeStack) -> None:
    job = processing_job(stack)
    end(job)
    for _ in range(2):  # read from job_service, then from the cache
        response, elapsed = await timed(
            gateway.http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(30))
        )
        assert elapsed < 2
        assert response.status_code == 200
        assert response.headers["preference-applied"] == "wait=30"
        assert response.json()["status"] == "completed"
    assert stack.jobs.reads.count(job.id) == 1


async def test_create_with_wait_answers_200_with_the_job_once_it_ends(
    gateway: Gateway, stack: FakeStack
) -> None:
    request = asyncio.create_task(
        timed(gateway.http.post("/api/v1/lipsync-image", json=IMAGE_BODY, headers=wait_for(30)))
    )
    await until(lambda: bool(stack.jobs.created) and len(stack.jobs.reads) == 1)
    [job] = stack.jobs.jobs.values()
    end(job)
    await notices.publish(gateway.publisher, notices.ENDED, job.id)
    response, elapsed = await request
    assert elapsed < 5
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=30"
    assert response.headers["location"] == f"/api/v1/jobs/{job.id}"
    body = response.json()
    assert (body["id"], body["status"], body["output"]) == (job.id, "completed", job.output_url)


async def test_create_with_wait_answers_202_with_the_full_job_when_time_is_up(
    gateway: Gateway, stack: FakeStack
) -> None:
    response, elapsed = await timed(
        gateway.http.post("/api/v1/lipsync-image", json=IMAGE_BODY, headers=wait_for(1))
    )
    assert 0.95 <= elapsed < 3
    assert response.status_code == 202
    assert response.headers["preference-applied"] == "wait=1"
    body = response.json()
    assert body["status"] == "processing"
    assert body["model"] == "lipsync-image"
    assert body["output"] is None and body["progress"]["stage"] == "queued"
    assert body["id"] == response.headers["location"].rsplit("/", 1)[1]


async def test_create_without_prefer_is_unchanged(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/lipsync-image",
        json=IMAGE_BODY,
        headers={**AUTH_HEADERS, "Prefer": "respond-async"},
    )
    assert response.status_code == 202
    assert set(response.json()) == {"id", "status"}
    assert "preference-applied" not in response.headers


async def test_reads_failing_after_create_still_answer_the_created_job(
    gateway: Gateway, stack: FakeStack
) -> None:
    # The job exists: an error here would tell the client that it does not.
    stack.jobs.failures["GetJob"] = (grpc.StatusCode.UNAVAILABLE, "restarting")
    response = await gateway.http.post(
        "/api/v1/lipsync-image", json=IMAGE_BODY, headers=wait_for(1)
    )
    assert response.status_code == 202, response.text
    assert response.json()["id"] in stack.jobs.jobs


@pytest.mark.parametrize(
    "prefer", ["wait=0", "wait=61", "wait=1.5", "wait", "respond-async, wait=x"]
)
async def test_a_bad_wait_is_422_naming_prefer_and_creates_nothing(
    client: httpx.AsyncClient, stack: FakeStack, prefer: str
) -> None:
    headers = {**AUTH_HEADERS, "Prefer": prefer}
    created = await client.post("/api/v1/lipsync-image", json=IMAGE_BODY, headers=headers)
    problem = assert_problem(created, 422, "invalid_parameter")
    assert [e["field"] for e in problem["errors"]] == ["Prefer"]  # type: ignore[union-attr]
    assert stack.jobs.created == []
    read = await client.get(f"/api/v1/jobs/{processing_job(stack).id}", headers=headers)
    problem = assert_problem(read, 422, "invalid_parameter")
    assert [e["field"] for e in problem["errors"]] == ["Prefer"]  # type: ignore[union-attr]


async def test_a_bad_wait_is_listed_with_the_bodys_errors(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/lipsync-image",
        content=json.dumps({"formState": {"image": "https://c.example.com/i.png"}}),
        headers={**AUTH_HEADERS, "Prefer": "wait=100"},
    )
    problem = assert_problem(response, 422, "invalid_parameter")
    fields = [e["field"] for e in problem["errors"]]  # type: ignore[union-attr]
    assert fields == ["Prefer", "formState.audio"]


async def test_past_the_bound_requests_answer_without_waiting(
    stack: FakeStack, settings: GatewaySettings, clock: FakeClock
) -> None:
    app = create_app(replace(settings, max_waiters_per_account=0), stack.backends)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        job = processing_job(stack)
        read, elapsed = await timed(http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(30)))
        assert elapsed < 2 and read.status_code == 200
        assert "preference-applied" not in read.headers
        created, elapsed = await timed(
            http.post("/api/v1/lipsync-image", json=IMAGE_BODY, headers=wait_for(30))
        )
        assert elapsed < 2 and created.status_code == 202
        assert set(created.json()) == {"id", "status"}
        assert "preference-applied" not in created.headers


async def test_a_cancel_on_this_replica_wakes_its_waiters_without_nats(
    client: httpx.AsyncClient, stack: FakeStack
) -> None:
    job = processing_job(stack)
    request = asyncio.create_task(timed(client.get(f"/api/v1/jobs/{job.id}", headers=wait_for(30))))
    await until(lambda: stack.jobs.reads.count(job.id) == 1)
    canceled = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=AUTH_HEADERS)
    assert canceled.status_code == 200
    response, elapsed = await request
    assert elapsed < 5
    assert response.json()["status"] == "canceled"


async def test_a_deleted_notice_drops_the_cached_job(gateway: Gateway, stack: FakeStack) -> None:
    job = processing_job(stack)
    end(job)
    path = f"/api/v1/jobs/{job.id}"
    assert (await gateway.http.get(path, headers=AUTH_HEADERS)).json()["output"]
    # Another replica deleted the output: job_service's record changed behind this one.
    job.output_url = ""
    job.deleted_at.GetCurrentTime()
    assert (await gateway.http.get(path, headers=AUTH_HEADERS)).json()["output"]  # cached
    await notices.publish(gateway.publisher, notices.DELETED, job.id)
    async with asyncio.timeout(5):
        while (body := (await gateway.http.get(path, headers=AUTH_HEADERS)).json())["output"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert body["deletedAt"] is not None


async def test_serves_while_nats_is_down_and_hears_notices_once_it_is_up(
    stack: FakeStack,
    settings: GatewaySettings,
    clock: FakeClock,
    restartable_nats: NatsProcess,
) -> None:
    restartable_nats.stop()
    listener = JobNotices(restartable_nats.url)
    listener.start()
    try:
        app = create_app(settings, stack.backends, notices=listener)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            job = processing_job(stack)
            response, elapsed = await timed(http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(1)))
            assert response.status_code == 200 and 0.95 <= elapsed < 3
            assert not listener.subscribed.is_set()

            restartable_nats.start()
            await asyncio.wait_for(listener.subscribed.wait(), 10)
            await _woken_by_notices(http, stack, restartable_nats.url)

            # A restart: the client reconnects and renews its subscriptions.
            restartable_nats.stop()
            restartable_nats.start()
            await _woken_by_notices(http, stack, restartable_nats.url)
    finally:
        await listener.close()


async def _woken_by_notices(http: httpx.AsyncClient, stack: FakeStack, url: str) -> None:
    """A waiting GET ends well before its time once notices about its job are sent."""
    job = processing_job(stack)
    request = asyncio.create_task(timed(http.get(f"/api/v1/jobs/{job.id}", headers=wait_for(30))))
    await until(lambda: stack.jobs.reads.count(job.id) == 1)
    end(job)
    publisher = await nats.connect(url)
    try:
        # Resent until heard: after a restart the subscription comes back on its own time.
        while not request.done():
            await notices.publish(publisher, notices.ENDED, job.id)
            await asyncio.wait([request], timeout=0.1)
    finally:
        await publisher.close()
    response, elapsed = await request
    assert response.json()["status"] == "completed"
    assert elapsed < 15


async def test_a_gateway_without_nats_closes_cleanly() -> None:
    listener = JobNotices(f"nats://127.0.0.1:{free_port()}")
    listener.start()
    await asyncio.sleep(0.2)
    await asyncio.wait_for(listener.close(), 5)
    JobNotices("").start()  # no URL: nothing to connect to
