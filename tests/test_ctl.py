"""`lipsyncctl` against real auth and billing servers started by the test.

The job commands talk to a JobService servicer of this module with canned jobs
over real gRPC: what is checked there is the command line, the requests it
sends (an operator's `any_account`) and how answers and errors print. One
integration test then runs them against the real stack, job_service included.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common import ctl
from lipsync_common.jobjson import job_to_json
from tests.auth_service.auth_harness import running_auth
from tests.billing_service.billing_harness import running_billing
from tests.integration.harness import (
    MediaHost,
    QuietHTTPServer,
    bearer,
    running_stack,
    stack_env,
    wait_until_finished,
)
from tests.job_specs import image_spec, video_spec
from tests.media_fixtures import portrait_path, write_garbage


@dataclass
class Cli:
    capsys: pytest.CaptureFixture[str]

    async def run(self, *argv: str) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
        """Exit status, stdout JSON and stderr JSON of one command."""
        # The servers share this event loop, so the blocking CLI runs on a thread.
        status = await asyncio.to_thread(ctl.main, list(argv))
        out, err = self.capsys.readouterr()
        return status, json.loads(out) if out else None, json.loads(err) if err else None

    async def ok(self, *argv: str) -> dict[str, Any]:
        status, out, err = await self.run(*argv)
        assert (status, err) == (0, None)
        assert out is not None
        return out

    async def fails(self, *argv: str) -> dict[str, Any]:
        status, out, err = await self.run(*argv)
        assert (status, out) == (1, None)
        assert err is not None
        return err


@pytest.fixture
async def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Cli]:
    (tmp_path / "auth").mkdir()
    (tmp_path / "billing").mkdir()
    async with running_auth(tmp_path / "auth") as auth:
        async with running_billing(tmp_path / "billing") as billing:
            monkeypatch.setenv("LIPSYNC_AUTH_ADDR", auth.addr)
            monkeypatch.setenv("LIPSYNC_BILLING_ADDR", billing.addr)
            yield Cli(capsys)


async def test_account_key_and_credits_lifecycle(cli: Cli) -> None:
    account = (await cli.ok("account", "create", "--email", "ops@example.com"))["account_id"]

    created = await cli.ok("key", "create", "--account", account, "--name", "ci")
    assert created["key"].startswith(f"sk_{created['key_id']}_")
    assert created["name"] == "ci"

    listed = await cli.ok("key", "list", "--account", account)
    assert listed == {
        "data": [
            {
                "key_id": created["key_id"],
                "name": "ci",
                "prefix": created["key"][:12],
                "created_at": created["created_at"],
                "last_used_at": None,
                "revoked": False,
            }
        ]
    }
    assert created["created_at"].endswith("Z")

    revoked = await cli.ok("key", "revoke", "--key-id", created["key_id"])
    assert revoked == {"key_id": created["key_id"], "revoked": True}
    listed = await cli.ok("key", "list", "--account", account)
    assert listed["data"][0]["revoked"] is True

    granted = await cli.ok(
        "credits", "grant", "--account", account, "--amount", "100", "--reason", "t"
    )
    assert granted == {"api_credits": 100, "user_credits": 0, "reserved_credits": 0}
    await cli.ok(
        "credits",
        "grant",
        "--account",
        account,
        "--amount",
        "5",
        "--reason",
        "web",
        "--wallet",
        "user",
    )
    balance = await cli.ok("credits", "balance", "--account", account)
    assert balance == {"api_credits": 100, "user_credits": 5, "reserved_credits": 0}


async def test_service_errors_are_json_on_stderr(cli: Cli) -> None:
    await cli.ok("account", "create", "--email", "ops@example.com")
    error = await cli.fails("account", "create", "--email", "OPS@example.com")
    assert error["code"] == "already_exists"
    assert error["error"]

    error = await cli.fails("key", "create", "--account", "no-such-account")
    assert error["code"] == "not_found"

    error = await cli.fails("credits", "grant", "--account", "a", "--amount", "0", "--reason", "r")
    assert error["code"] == "invalid_argument"


async def test_usage_errors_are_json_on_stderr(cli: Cli) -> None:
    error = await cli.fails("key", "create")
    assert error["code"] == "usage"
    assert "--account" in error["error"]
    error = await cli.fails(
        "credits", "grant", "--account", "a", "--amount", "ten", "--reason", "r"
    )
    assert error["code"] == "usage"


async def test_unreachable_service_is_reported(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIPSYNC_BILLING_ADDR", "127.0.0.1:1")
    error = await cli.fails("credits", "balance", "--account", "a")
    assert error["code"] == "unavailable"


async def test_account_list_disable_and_credits_history(cli: Cli) -> None:
    first = (await cli.ok("account", "create", "--email", "a@example.com"))["account_id"]
    second = (await cli.ok("account", "create", "--email", "b@example.com"))["account_id"]
    page = await cli.ok("account", "list", "--limit", "1")
    assert [a["account_id"] for a in page["data"]] == [first]
    rest = await cli.ok("account", "list", "--page-token", page["next_page_token"])
    assert [a["account_id"] for a in rest["data"]] == [second]
    assert rest["next_page_token"] is None

    disabled = await cli.ok("account", "disable", "--account", first)
    assert disabled["disabled"] is True
    error = await cli.fails("account", "disable", "--account", "nope")
    assert error["code"] == "not_found"

    for wallet, amount in (("api", "100"), ("user", "7")):
        await cli.ok(
            "credits",
            "grant",
            "--account",
            second,
            "--amount",
            amount,
            "--reason",
            "promo",
            "--wallet",
            wallet,
        )
    history = await cli.ok("credits", "history", "--account", second)
    assert [(e["wallet"], e["kind"], e["credits"]) for e in history["data"]] == [
        ("user", "grant", 7),
        ("api", "grant", 100),
    ]
    assert history["data"][0]["reason"] == "promo" and history["next_cursor"] is None


# --- jobs and webhooks -------------------------------------------------------

ALICE = "acct-alice"
RUNNING = "00000000-0000-4000-8000-000000000001"
DONE = "00000000-0000-4000-8000-000000000002"
BOB_VIDEO = "00000000-0000-4000-8000-000000000003"
MISSING = "00000000-0000-4000-8000-0000000000ff"


def _at(seconds: int) -> Timestamp:
    return Timestamp(seconds=1_800_000_000 + seconds)


def canned_jobs() -> dict[str, jobs_pb2.Job]:
    """Newest first: a running job and a completed one of Alice, a job of Bob."""
    running = jobs_pb2.Job(
        id=RUNNING,
        account_id=ALICE,
        status=jobs_pb2.JOB_STATUS_PROCESSING,
        spec=image_spec(),
        webhook="https://hooks.example/a",
        created_at=_at(30),
        progress=jobs_pb2.JobProgress(
            stage=jobs_pb2.JOB_STAGE_RENDERING, percent=40, eta_seconds=12
        ),
    )
    done = jobs_pb2.Job(
        id=DONE,
        account_id=ALICE,
        status=jobs_pb2.JOB_STATUS_COMPLETED,
        spec=image_spec(),
        output_url="https://api/outputs/x.mp4",
        execution_time_ms=900,
        credits=10,
        seed=7,
        created_at=_at(20),
        finished_at=_at(21),
    )
    bob = jobs_pb2.Job(
        id=BOB_VIDEO,
        account_id="acct-bob",
        status=jobs_pb2.JOB_STATUS_FAILED,
        spec=video_spec(),
        error="no face found in video",
        credits=0,
        webhook="https://hooks.example/b",
        created_at=_at(10),
        finished_at=_at(11),
    )
    return {job.id: job for job in (running, done, bob)}


@dataclass
class CannedJobService(jobs_pb2_grpc.JobServiceServicer):
    """JobService's rules of visibility and state, over a fixed set of jobs."""

    jobs: dict[str, jobs_pb2.Job] = field(default_factory=canned_jobs)
    requests: list[Any] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _find(
        self, job_id: str, account: str, any_account: bool, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        job = self.jobs.get(job_id)
        if job is None or not (any_account or job.account_id == account):
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        assert job is not None
        return job

    def _found(self, ref: jobs_pb2.JobRef, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return self._find(ref.job_id, ref.account_id, ref.any_account, context)

    def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        self.requests.append(request)
        job = self._find(request.job_id, request.account_id, request.any_account, context)
        return jobs_pb2.GetJobResponse(job=job)

    def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        self.requests.append(request)
        # The cursor is the index of the page's first job: opaque to the CLI.
        if request.cursor and not request.cursor.isdigit():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "cursor is not one of ours")
        start = int(request.cursor or 0)
        limit = request.limit or 20
        matching = [
            job
            for job in self.jobs.values()
            if job.account_id == request.account_id
            and request.status in (0, job.status)
            and request.model in ("", job_to_json(job)["model"])
        ]
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        return jobs_pb2.ListJobsResponse(jobs=page, next_cursor=str(start + limit) if more else "")

    def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        self.requests.append(request)
        with self.lock:
            job = self._found(request.job, context)
            if job.status != jobs_pb2.JOB_STATUS_PROCESSING:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job_finished")
            job.status = jobs_pb2.JOB_STATUS_CANCELED
            job.credits = 0
            job.finished_at.CopyFrom(_at(40))
            job.ClearField("progress")
            return jobs_pb2.CancelJobResponse(job=job)

    def ListWebhookDeliveries(
        self, request: jobs_pb2.ListWebhookDeliveriesRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListWebhookDeliveriesResponse:
        self.requests.append(request)
        job = self._found(request.job, context)
        if not job.webhook:
            return jobs_pb2.ListWebhookDeliveriesResponse()
        return jobs_pb2.ListWebhookDeliveriesResponse(
            deliveries=[
                jobs_pb2.WebhookDelivery(
                    attempt=1, at=_at(12), error="connection refused", next_attempt_at=_at(17)
                ),
                jobs_pb2.WebhookDelivery(attempt=2, at=_at(17), status_code=204, latency_ms=35),
            ],
            delivered=True,
        )

    # CreateJob and DeleteJob are not lipsyncctl's: the base class answers UNIMPLEMENTED.

    def RedeliverWebhook(
        self, request: jobs_pb2.RedeliverWebhookRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.RedeliverWebhookResponse:
        self.requests.append(request)
        job = self._found(request.job, context)
        if not job.webhook:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no_webhook")
        if job.status == jobs_pb2.JOB_STATUS_PROCESSING:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job_processing")
        self.redelivered.append(job.id)
        return jobs_pb2.RedeliverWebhookResponse()


@pytest.fixture
def job_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[CannedJobService]:
    servicer = CannedJobService()  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("LIPSYNC_JOBS_ADDR", f"127.0.0.1:{port}")
    try:
        yield servicer
    finally:
        server.stop(None)


@pytest.fixture
def jobs_cli(job_service: CannedJobService, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


async def test_jobs_get_prints_the_public_object_of_any_account(
    jobs_cli: Cli, job_service: CannedJobService
) -> None:
    job = await jobs_cli.ok("jobs", "get", BOB_VIDEO)
    assert job == {
        **job_to_json(job_service.jobs[BOB_VIDEO]),
        "account_id": "acct-bob",
    }
    assert job["model"] == "lipsync-video" and job["status"] == "failed"
    assert job["credits"] == 0 and job["progress"] is None
    assert job_service.requests[-1] == jobs_pb2.GetJobRequest(job_id=BOB_VIDEO, any_account=True)

    running = await jobs_cli.ok("jobs", "get", RUNNING)
    assert running["progress"] == {"stage": "rendering", "percent": 40, "etaSeconds": 12}
    assert running["createdAt"] == "2027-01-15T08:00:30Z"


async def test_jobs_list_names_the_account_filters_and_pages(
    jobs_cli: Cli, job_service: CannedJobService
) -> None:
    page = await jobs_cli.ok("jobs", "list", "--account", ALICE, "--limit", "1")
    assert [(j["id"], j["account_id"]) for j in page["data"]] == [(RUNNING, ALICE)]
    assert page["next_cursor"] == "1"
    assert job_service.requests[-1] == jobs_pb2.ListJobsRequest(account_id=ALICE, limit=1)
    rest = await jobs_cli.ok("jobs", "list", "--account", ALICE, "--cursor", page["next_cursor"])
    assert [j["id"] for j in rest["data"]] == [DONE]
    assert rest["next_cursor"] is None

    done = await jobs_cli.ok(
        "jobs", "list", "--account", ALICE, "--status", "completed", "--model", "lipsync-image"
    )
    assert [j["id"] for j in done["data"]] == [DONE]
    assert job_service.requests[-1] == jobs_pb2.ListJobsRequest(
        account_id=ALICE,
        status=jobs_pb2.JOB_STATUS_COMPLETED,
        model="lipsync-image",
        limit=20,
    )
    none = await jobs_cli.ok("jobs", "list", "--account", ALICE, "--model", "lipsync-video")
    assert none == {"data": [], "next_cursor": None}


async def test_jobs_list_usage_and_service_errors(jobs_cli: Cli) -> None:
    error = await jobs_cli.fails("jobs", "list")
    assert error["code"] == "usage" and "--account" in error["error"]
    error = await jobs_cli.fails("jobs", "list", "--account", ALICE, "--status", "done")
    assert error["code"] == "usage" and "--status" in error["error"]
    error = await jobs_cli.fails("jobs", "list", "--account", ALICE, "--model", "lipsync")
    assert error["code"] == "usage"
    error = await jobs_cli.fails("jobs", "list", "--account", ALICE, "--cursor", "garbage")
    assert error == {"error": "cursor is not one of ours", "code": "invalid_argument"}


async def test_jobs_cancel_then_cancel_again(jobs_cli: Cli, job_service: CannedJobService) -> None:
    canceled = await jobs_cli.ok("jobs", "cancel", RUNNING)
    assert canceled["status"] == "canceled" and canceled["credits"] == 0
    assert canceled["progress"] is None and canceled["account_id"] == ALICE
    assert job_service.requests[-1] == jobs_pb2.CancelJobRequest(
        job=jobs_pb2.JobRef(job_id=RUNNING, any_account=True)
    )
    error = await jobs_cli.fails("jobs", "cancel", RUNNING)
    assert error == {"error": "job_finished", "code": "failed_precondition"}


async def test_job_commands_say_job_not_found(jobs_cli: Cli) -> None:
    for argv in (
        ("jobs", "get", MISSING),
        ("jobs", "cancel", MISSING),
        ("webhooks", "deliveries", MISSING),
        ("webhooks", "redeliver", MISSING),
    ):
        error = await jobs_cli.fails(*argv)
        assert error == {"error": "job not found", "code": "not_found"}, argv
    error = await jobs_cli.fails("jobs", "get")
    assert error["code"] == "usage"


async def test_webhook_deliveries_print_as_the_api_does(
    jobs_cli: Cli, job_service: CannedJobService
) -> None:
    deliveries = await jobs_cli.ok("webhooks", "deliveries", BOB_VIDEO)
    assert deliveries == {
        "data": [
            {
                "attempt": 1,
                "at": "2027-01-15T08:00:12Z",
                "statusCode": None,
                "latencyMs": None,
                "error": "connection refused",
                "nextAttemptAt": "2027-01-15T08:00:17Z",
            },
            {
                "attempt": 2,
                "at": "2027-01-15T08:00:17Z",
                "statusCode": 204,
                "latencyMs": 35,
                "error": "",
                "nextAttemptAt": None,
            },
        ],
        "delivered": True,
    }
    assert job_service.requests[-1].job == jobs_pb2.JobRef(job_id=BOB_VIDEO, any_account=True)
    assert await jobs_cli.ok("webhooks", "deliveries", DONE) == {"data": [], "delivered": False}


async def test_webhooks_redeliver(jobs_cli: Cli, job_service: CannedJobService) -> None:
    assert await jobs_cli.ok("webhooks", "redeliver", BOB_VIDEO) == {
        "job_id": BOB_VIDEO,
        "redelivering": True,
    }
    assert job_service.redelivered == [BOB_VIDEO]
    error = await jobs_cli.fails("webhooks", "redeliver", DONE)
    assert error == {"error": "no_webhook", "code": "failed_precondition"}
    error = await jobs_cli.fails("webhooks", "redeliver", RUNNING)
    assert error == {"error": "job_processing", "code": "failed_precondition"}


async def test_unreachable_job_service_is_reported(
    jobs_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIPSYNC_JOBS_ADDR", "127.0.0.1:1")
    error = await jobs_cli.fails("jobs", "get", DONE)
    assert error["code"] == "unavailable"


# --- against the real stack ------------------------------------------------------


@contextmanager
def stalled_media() -> Iterator[str]:
    """A URL whose server answers nothing until the test is over: a job stays downloading."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(30)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/portrait.jpg"
    finally:
        release.set()
        server.shutdown()


@dataclass
class BlockingCli:
    """`Cli` for a test without an event loop of its own."""

    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
        status = ctl.main(list(argv))
        out, err = self.capsys.readouterr()
        return status, json.loads(out) if out else None, json.loads(err) if err else None

    def ok(self, *argv: str) -> dict[str, Any]:
        status, out, err = self.run(*argv)
        assert (status, err) == (0, None)
        assert out is not None
        return out

    def fails(self, *argv: str) -> dict[str, Any]:
        status, out, err = self.run(*argv)
        assert (status, out) == (1, None)
        assert err is not None
        return err


def eventually(read: Any, ok: Any, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while not ok(value := read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


@pytest.mark.integration
def test_job_commands_against_the_real_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "portrait.jpg").write_bytes(portrait_path().read_bytes())
    write_garbage(media / "garbage.mp3")
    host = MediaHost(media)
    env = stack_env(tmp_path / "stack")
    cli = BlockingCli(capsys)
    try:
        with (
            running_stack(tmp_path / "stack", env) as stack,
            stalled_media() as stalled,
            httpx.Client(base_url=stack.http_url, timeout=30) as client,
        ):
            for name in ("AUTH", "BILLING", "JOBS"):
                monkeypatch.setenv(f"LIPSYNC_{name}_ADDR", env[f"LIPSYNC_{name}_ADDR"])
            account = cli.ok("account", "create", "--email", "ops@example.com")["account_id"]
            key = cli.ok("key", "create", "--account", account)["key"]
            client.headers.update(bearer(key))
            cli.ok("credits", "grant", "--account", account, "--amount", "100", "--reason", "t")

            def submit(image: str, audio: str, webhook: str | None = None) -> str:
                body: dict[str, Any] = {"formState": {"image": image, "audio": audio}}
                if webhook:
                    body["webhook"] = webhook
                response = client.post("/api/v1/lipsync-image", json=body)
                assert response.status_code == 202, response.text
                return str(response.json()["id"])

            # A job that fails at once (its audio is no audio), with a webhook.
            failed = submit(f"{host.url}/portrait.jpg", f"{host.url}/garbage.mp3", host.url)
            rest = wait_until_finished(client, failed, key, timeout_s=60)
            assert rest["status"] == "failed"

            job = cli.ok("jobs", "get", failed)
            assert job == {**rest, "account_id": account}
            assert cli.fails("jobs", "cancel", failed) == {
                "error": "job_finished",
                "code": "failed_precondition",
            }

            # The webhook was delivered once; a redelivery is a second attempt.
            first_headers, _ = host.wait_for_webhook(failed, timeout_s=30)
            deliveries = eventually(
                lambda: cli.ok("webhooks", "deliveries", failed),
                lambda d: d["delivered"],
            )
            assert [(d["attempt"], d["statusCode"], d["error"]) for d in deliveries["data"]] == [
                (1, 204, "")
            ]
            assert cli.ok("webhooks", "redeliver", failed) == {
                "job_id": failed,
                "redelivering": True,
            }
            deliveries = eventually(
                lambda: cli.ok("webhooks", "deliveries", failed),
                lambda d: len(d["data"]) == 2,
            )
            assert [d["attempt"] for d in deliveries["data"]] == [1, 2]
            assert deliveries["data"][1]["statusCode"] == 204
            again = [h for h, p in host.webhooks if p.get("id") == failed]
            assert len(again) == 2
            assert again[1]["webhook-id"] == first_headers["webhook-id"]

            # A job stuck downloading is canceled at once, for nothing.
            stuck = submit(stalled, f"{host.url}/garbage.mp3")
            canceled = cli.ok("jobs", "cancel", stuck)
            assert (canceled["id"], canceled["status"], canceled["credits"]) == (
                stuck,
                "canceled",
                0,
            )
            assert canceled["account_id"] == account

            listed = cli.ok("jobs", "list", "--account", account)
            assert [j["id"] for j in listed["data"]] == [stuck, failed]
            only = cli.ok("jobs", "list", "--account", account, "--status", "failed")
            assert [j["id"] for j in only["data"]] == [failed]
            page = cli.ok("jobs", "list", "--account", account, "--limit", "1")
            assert page["next_cursor"]
            rest_page = cli.ok(
                "jobs", "list", "--account", account, "--cursor", page["next_cursor"]
            )
            assert [j["id"] for j in rest_page["data"]] == [failed]
            error = cli.fails("jobs", "list", "--account", account, "--cursor", "nope")
            assert error["code"] == "invalid_argument"

            missing = "00000000-0000-4000-8000-000000000000"
            assert cli.fails("jobs", "get", missing) == {
                "error": "job not found",
                "code": "not_found",
            }
    finally:
        host.close()
