"""Fixtures: the gateway app over real in-process gRPC servers.

The four services are small in-memory fakes behind real `grpc.aio` servers,
so the gateway's channels, stubs, timeouts and status codes are exercised for
real; the services themselves are tested in their own suites.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.app import create_app
from gateway.clients import SERVICE_NAMES, Backends
from gateway.settings import GatewaySettings
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.inference.v1 import inference_pb2, inference_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common.credentials import checksum
from lipsync_common.job_spec import model_name


def with_checksum(body: str) -> str:
    return body + checksum(body)


# Real keys carry a checksum the gateway checks before calling auth.
API_KEY = with_checksum("sk_testkey1_" + "A1b2C3d4" * 4)
OTHER_KEY = with_checksum("sk_testkey2_" + "Z9y8X7w6" * 4)
# A session token of ACCOUNT, as the console sends it.
SESSION_TOKEN = with_checksum("ses_" + "S3ss10nT" * 5)
ACCOUNT = "acct-1"
OTHER_ACCOUNT = "acct-2"
SIGNING_KEY = b"test-signing-key"
AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
SESSION_HEADERS = {"Authorization": f"Bearer {SESSION_TOKEN}"}


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self) -> None:
        self.keys = {API_KEY: (ACCOUNT, "testkey1"), OTHER_KEY: (OTHER_ACCOUNT, "testkey2")}
        self.revoked: set[str] = set()
        self.calls: list[str] = []

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthenticateResponse:
        self.calls.append(request.credential)
        if request.credential == SESSION_TOKEN:
            return auth_pb2.AuthenticateResponse(
                account_id=ACCOUNT, kind=auth_pb2.CREDENTIAL_KIND_SESSION, session_id="session1"
            )
        found = self.keys.get(request.credential)
        if found is None or request.credential in self.revoked:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid credential")
        account_id, key_id = found
        return auth_pb2.AuthenticateResponse(account_id=account_id, key_id=key_id)


class FakeBilling(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self) -> None:
        self.balances = {ACCOUNT: 1000, OTHER_ACCOUNT: 1000}
        self.quotes: list[billing_pb2.Usage] = []

    async def Quote(
        self, request: billing_pb2.QuoteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.QuoteResponse:
        self.quotes.append(request.usage)
        rate = 4 if request.usage.spec.resolution == jobs_pb2.RESOLUTION_720P else 2
        seconds = math.ceil(max([5.0, *request.usage.duration_seconds]))
        return billing_pb2.QuoteResponse(billed_seconds=seconds, credits=seconds * rate)

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GetBalanceResponse:
        return billing_pb2.GetBalanceResponse(api_credits=self.balances.get(request.account_id, 0))


_ENDED = (jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELED)


@dataclass
class FakeJobs(jobs_pb2_grpc.JobServiceServicer):
    """job_service's rules as the gateway relies on them, over a dict of jobs."""

    jobs: dict[str, jobs_pb2.Job] = field(default_factory=dict)
    created: list[jobs_pb2.CreateJobRequest] = field(default_factory=list)
    idempotency: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # When set, CreateJob refuses with this status and message, as job_service
    # does for an account at its processing cap or short of credits.
    refusal: tuple[grpc.StatusCode, str] | None = None
    # Method name -> the status and message it fails with (job control and GetJob).
    failures: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    # Every job id GetJob was asked for, in order: how a test knows a read happened.
    reads: list[str] = field(default_factory=list)
    listed: list[jobs_pb2.ListJobsRequest] = field(default_factory=list)
    # Job id -> its webhook attempts, and the ids RedeliverWebhook was asked for.
    deliveries: dict[str, list[jobs_pb2.WebhookDelivery]] = field(default_factory=dict)
    redelivered: list[str] = field(default_factory=list)

    def add(self, job: jobs_pb2.Job) -> jobs_pb2.Job:
        self.jobs[job.id] = job
        return job

    async def _fail_if_told(self, method: str, context: grpc.aio.ServicerContext) -> None:
        if method in self.failures:
            await context.abort(*self.failures[method])

    async def _own_job(
        self, ref: jobs_pb2.JobRef, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        job = self.jobs.get(ref.job_id)
        if job is None or (job.account_id != ref.account_id and not ref.any_account):
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        assert job is not None
        return job

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        self.listed.append(request)
        await self._fail_if_told("ListJobs", context)
        start = 0
        if request.cursor:
            if not request.cursor.startswith("at-") or not request.cursor[3:].isdigit():
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad cursor")
            start = int(request.cursor[3:])
        # Newest first: the last added first.
        matching = [
            job
            for job in reversed(self.jobs.values())
            if job.account_id == request.account_id
            and (not request.status or job.status == request.status)
            and (not request.model or model_name(job.spec) == request.model)
        ]
        limit = request.limit or 20
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        return jobs_pb2.ListJobsResponse(
            jobs=page, next_cursor=f"at-{start + limit}" if more else ""
        )

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        await self._fail_if_told("CancelJob", context)
        job = await self._own_job(request.job, context)
        if job.status in _ENDED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job_finished")
        job.status = jobs_pb2.JOB_STATUS_CANCELED
        job.credits = 0
        job.ClearField("progress")
        return jobs_pb2.CancelJobResponse(job=job)

    async def DeleteJob(
        self, request: jobs_pb2.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.DeleteJobResponse:
        await self._fail_if_told("DeleteJob", context)
        job = await self._own_job(request.job, context)
        if job.status not in _ENDED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job_processing")
        job.output_url = ""
        job.deleted_at.GetCurrentTime()
        return jobs_pb2.DeleteJobResponse(job=job)

    async def ListWebhookDeliveries(
        self, request: jobs_pb2.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListWebhookDeliveriesResponse:
        await self._fail_if_told("ListWebhookDeliveries", context)
        job = await self._own_job(request.job, context)
        attempts = self.deliveries.get(job.id, [])
        delivered = any(a.HasField("status_code") and 200 <= a.status_code < 300 for a in attempts)
        return jobs_pb2.ListWebhookDeliveriesResponse(deliveries=attempts, delivered=delivered)

    async def RedeliverWebhook(
        self, request: jobs_pb2.RedeliverWebhookRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.RedeliverWebhookResponse:
        await self._fail_if_told("RedeliverWebhook", context)
        job = await self._own_job(request.job, context)
        if not job.webhook:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no_webhook")
        if job.status not in _ENDED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job_processing")
        self.redelivered.append(job.id)
        return jobs_pb2.RedeliverWebhookResponse()

    async def CreateJob(
        self, request: jobs_pb2.CreateJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CreateJobResponse:
        self.created.append(request)
        if self.refusal is not None:
            await context.abort(*self.refusal)
        slot = (request.account_id, request.idempotency_key)
        if request.idempotency_key and slot in self.idempotency:
            fingerprint, job_id = self.idempotency[slot]
            if fingerprint != request.request_fingerprint:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, "key reused")
            return jobs_pb2.CreateJobResponse(job=self.jobs[job_id])
        job = self.add(
            jobs_pb2.Job(
                id=str(uuid.uuid4()),
                account_id=request.account_id,
                status=jobs_pb2.JOB_STATUS_PROCESSING,
                spec=request.spec,
                webhook=request.webhook,
            )
        )
        if request.idempotency_key:
            self.idempotency[slot] = (request.request_fingerprint, job.id)
        return jobs_pb2.CreateJobResponse(job=job)

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        self.reads.append(request.job_id)
        await self._fail_if_told("GetJob", context)
        job = self.jobs.get(request.job_id)
        if job is None or job.account_id != request.account_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        return jobs_pb2.GetJobResponse(job=job)


@dataclass
class FakeInference(inference_pb2_grpc.InferenceServiceServicer):
    """Probes by answering the durations it is told; `unreadable` refuses the media."""

    durations: list[float] = field(default_factory=lambda: [7.5])
    probed: list[inference_pb2.ProbeDurationsRequest] = field(default_factory=list)
    unreadable: str = ""

    async def ProbeDurations(
        self, request: inference_pb2.ProbeDurationsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ProbeDurationsResponse:
        self.probed.append(request)
        if self.unreadable:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.unreadable)
        return inference_pb2.ProbeDurationsResponse(duration_seconds=self.durations)


@dataclass
class FakeStack:
    """Four gRPC servers, one per service, each with its health service."""

    auth: FakeAuth
    billing: FakeBilling
    jobs: FakeJobs
    inference: FakeInference
    servers: dict[str, grpc.aio.Server]
    ports: dict[str, int]
    health: dict[str, health.aio.HealthServicer]
    backends: Backends

    async def stop(self, name: str) -> None:
        await self.servers[name].stop(None)


async def _serve(
    name: str, register: object, servicer: object
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    server = grpc.aio.server()
    register(servicer, server)  # type: ignore[operator]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if name in SERVICE_NAMES:  # inference stays out of readiness
        await health_servicer.set(SERVICE_NAMES[name], health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, health_servicer


@pytest.fixture
async def stack() -> AsyncIterator[FakeStack]:
    fakes = {
        "auth": FakeAuth(),
        "billing": FakeBilling(),
        "jobs": FakeJobs(),
        "inference": FakeInference(),
    }
    registers = {
        "auth": auth_pb2_grpc.add_AuthServiceServicer_to_server,
        "billing": billing_pb2_grpc.add_BillingServiceServicer_to_server,
        "jobs": jobs_pb2_grpc.add_JobServiceServicer_to_server,
        "inference": inference_pb2_grpc.add_InferenceServiceServicer_to_server,
    }
    servers, ports, healths = {}, {}, {}
    for name, fake in fakes.items():
        servers[name], ports[name], healths[name] = await _serve(name, registers[name], fake)
    backends = Backends.from_channels(
        *(grpc.aio.insecure_channel(f"127.0.0.1:{ports[name]}") for name in fakes)
    )
    yield FakeStack(
        auth=fakes["auth"],  # type: ignore[arg-type]
        billing=fakes["billing"],  # type: ignore[arg-type]
        jobs=fakes["jobs"],  # type: ignore[arg-type]
        inference=fakes["inference"],  # type: ignore[arg-type]
        servers=servers,
        ports=ports,
        health=healths,
        backends=backends,
    )
    await backends.close()
    for server in servers.values():
        await server.stop(None)


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    results = tmp_path / "results"
    results.mkdir()
    return GatewaySettings(
        http_addr="127.0.0.1:0",
        public_url="http://testserver",
        results_dir=results,
        allow_private_urls=False,
        auth_cache_s=0.5,
        auth_addr="unused",
        billing_addr="unused",
        jobs_addr="unused",
        shutdown_grace_s=1.0,
        signing_key=SIGNING_KEY,
    )


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    stack: FakeStack, settings: GatewaySettings, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, stack.backends, monotonic=clock, wall_clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The response is a problem+json of this status and code; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    # Every problem points at its code in the errors catalogue (gateway/errors_catalogue.py).
    assert body["type"] == f"http://testserver/api/v1/errors#{code}"
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body
