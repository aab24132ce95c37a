"""ListJobs, CancelJob, DeleteJob, webhook deliveries and progress, over real gRPC and NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from billing_service.store import WALLET_API
from job_service.store import Outcome
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common import notices
from lipsync_common.jetstream import events_subject, job_history, publish_event
from tests.billing_service.billing_harness import BillingHarness, running_billing
from tests.job_service.service_harness import JobService, running_job_service
from tests.job_specs import image_spec, video_spec

ACCOUNT = "acct"
TTL_S = 60


@pytest.fixture
async def svc(tmp_path: Path, nats_server: str) -> AsyncIterator[JobService]:
    billing: BillingHarness
    async with running_billing(tmp_path) as billing:
        await billing.ledger.grant(ACCOUNT, 10_000, WALLET_API, "test credits")
        await billing.ledger.grant("other", 10_000, WALLET_API, "test credits")
        async with running_job_service(
            tmp_path, nats_server, billing, max_processing=0, ttl_s=TTL_S
        ) as service:
            yield service


async def create(
    svc: JobService, spec: jobs_pb2.JobSpec | None = None, webhook: str = "", account: str = ACCOUNT
) -> jobs_pb2.Job:
    request = jobs_pb2.CreateJobRequest(
        account_id=account, spec=spec or image_spec(), webhook=webhook
    )
    return (await svc.stub.CreateJob(request)).job


def ref(job_id: str, account: str = ACCOUNT) -> jobs_pb2.JobRef:
    return jobs_pb2.JobRef(job_id=job_id, account_id=account)


async def get(svc: JobService, job_id: str) -> jobs_pb2.Job:
    request = jobs_pb2.GetJobRequest(job_id=job_id, account_id=ACCOUNT)
    return (await svc.stub.GetJob(request)).job


async def complete(svc: JobService, job_id: str) -> None:
    """The job's end as the event consumer would store it, with its output file."""
    key = f"{job_id}.mp4"
    (svc.results.root / key).write_bytes(b"mp4")
    await svc.store.finish(
        job_id,
        Outcome(status=jobs_pb2.JOB_STATUS_COMPLETED, output_key=key, credits=10, seed=1),
    )


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


class Heard:
    """Notices of one kind heard on NATS."""

    def __init__(self) -> None:
        self.job_ids: list[str] = []
        self.event = asyncio.Event()

    def __call__(self, job_id: str, _payload: bytes) -> None:
        self.job_ids.append(job_id)
        self.event.set()

    async def wait_for(self, job_id: str) -> None:
        async with asyncio.timeout(5):
            while job_id not in self.job_ids:
                self.event.clear()
                await self.event.wait()


async def test_listing_pages_newest_first_and_filters(svc: JobService) -> None:
    made = [await create(svc) for _ in range(4)]
    video = await create(svc, video_spec())
    await create(svc, account="other")
    await complete(svc, made[0].id)

    seen: list[str] = []
    cursor = ""
    while True:
        page = await svc.stub.ListJobs(
            jobs_pb2.ListJobsRequest(account_id=ACCOUNT, limit=2, cursor=cursor)
        )
        assert len(page.jobs) <= 2
        seen += [job.id for job in page.jobs]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == [video.id, *[job.id for job in reversed(made)]]

    completed = await svc.stub.ListJobs(
        jobs_pb2.ListJobsRequest(account_id=ACCOUNT, status=jobs_pb2.JOB_STATUS_COMPLETED)
    )
    assert [job.id for job in completed.jobs] == [made[0].id]
    assert completed.jobs[0].output_url and not completed.next_cursor
    videos = await svc.stub.ListJobs(
        jobs_pb2.ListJobsRequest(account_id=ACCOUNT, model="lipsync-video")
    )
    assert [job.id for job in videos.jobs] == [video.id]
    # A job in processing carries its progress; an ended one none.
    processing = await svc.stub.ListJobs(
        jobs_pb2.ListJobsRequest(account_id=ACCOUNT, status=jobs_pb2.JOB_STATUS_PROCESSING)
    )
    assert all(job.progress.stage == jobs_pb2.JOB_STAGE_QUEUED for job in processing.jobs)
    assert not completed.jobs[0].HasField("progress")


@pytest.mark.parametrize(
    ("limit", "cursor"), [(101, ""), (-1, ""), (5, "not-a-cursor"), (5, "WzEsMl0")]
)
async def test_a_bad_limit_or_cursor_is_invalid(svc: JobService, limit: int, cursor: str) -> None:
    error = await rpc_error(
        svc.stub.ListJobs(jobs_pb2.ListJobsRequest(account_id=ACCOUNT, limit=limit, cursor=cursor))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_queued_job_is_canceled_at_once_in_the_stream_and_the_record(
    svc: JobService,
) -> None:
    job = await create(svc)
    ended, cancels = Heard(), Heard()
    await notices.subscribe(svc.nc, notices.ENDED, ended)
    await notices.subscribe(svc.nc, notices.CANCEL, cancels)

    canceled = (await svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id)))).job
    assert canceled.status == jobs_pb2.JOB_STATUS_CANCELED
    assert canceled.credits == 0 and not canceled.HasField("progress")
    assert (await get(svc, job.id)).status == jobs_pb2.JOB_STATUS_CANCELED
    event = (await job_history(svc.js, job.id)).outcome
    assert event is not None and event.WhichOneof("kind") == "canceled"
    assert event.canceled.by == "api"
    await ended.wait_for(job.id)
    await cancels.wait_for(job.id)

    again = await rpc_error(svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id))))
    assert (again.code(), again.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "job_finished")


async def test_a_cancel_behind_a_stored_completion_finds_the_job_finished(
    svc: JobService,
) -> None:
    """The worker's `completed` is in the stream but not yet recorded: it wins, and is recorded."""
    job = await create(svc)
    done = events_pb2.JobEvent(
        job_id=job.id,
        account_id=ACCOUNT,
        completed=events_pb2.JobCompleted(output_key=f"{job.id}.mp4", credits=10, seed=3),
    )
    await publish_event(svc.js, done)
    error = await rpc_error(svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id))))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "job_finished")
    after = await get(svc, job.id)
    assert after.status == jobs_pb2.JOB_STATUS_COMPLETED and after.credits == 10


async def test_a_completion_followed_by_a_replayed_start_still_wins(svc: JobService) -> None:
    """The latest event is a repeat of `started`: the job's end is still its `completed`."""
    job = await create(svc)
    done = events_pb2.JobEvent(
        job_id=job.id,
        account_id=ACCOUNT,
        completed=events_pb2.JobCompleted(output_key=f"{job.id}.mp4", credits=10, seed=3),
    )
    await publish_event(svc.js, done)
    replayed = events_pb2.JobEvent(
        job_id=job.id, account_id=ACCOUNT, started=events_pb2.JobStarted(worker="w", attempt=1)
    )
    await svc.js.publish(
        events_subject(job.id), replayed.SerializeToString(), headers={"Nats-Msg-Id": "replay"}
    )
    error = await rpc_error(svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id))))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "job_finished")
    assert (await get(svc, job.id)).status == jobs_pb2.JOB_STATUS_COMPLETED


async def test_a_started_job_is_canceled_after_its_start_event(svc: JobService) -> None:
    job = await create(svc)
    started = events_pb2.JobEvent(
        job_id=job.id, account_id=ACCOUNT, started=events_pb2.JobStarted(worker="w", attempt=1)
    )
    await publish_event(svc.js, started)
    canceled = (await svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id)))).job
    assert canceled.status == jobs_pb2.JOB_STATUS_CANCELED


async def test_job_control_sees_only_the_callers_jobs(svc: JobService) -> None:
    job = await create(svc)
    calls = [
        svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id, "other"))),
        svc.stub.DeleteJob(jobs_pb2.DeleteJobRequest(job=ref(job.id, "other"))),
        svc.stub.ListWebhookDeliveries(
            jobs_pb2.ListWebhookDeliveriesRequest(job=ref(job.id, "other"))
        ),
        svc.stub.RedeliverWebhook(jobs_pb2.RedeliverWebhookRequest(job=ref(job.id, "other"))),
        svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref("no-such-job"))),
    ]
    for call in calls:
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    # The operator's tool may act on any account's job.
    operator = jobs_pb2.JobRef(job_id=job.id, any_account=True)
    canceled = (await svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=operator))).job
    assert canceled.status == jobs_pb2.JOB_STATUS_CANCELED
    event = (await job_history(svc.js, job.id)).outcome
    assert event is not None and event.canceled.by == "operator"


async def test_delete_removes_the_output_at_once_and_keeps_the_record(svc: JobService) -> None:
    job = await create(svc)
    busy = await rpc_error(svc.stub.DeleteJob(jobs_pb2.DeleteJobRequest(job=ref(job.id))))
    assert (busy.code(), busy.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "job_processing")

    await complete(svc, job.id)
    assert (await get(svc, job.id)).output_url
    deleted_notices = Heard()
    await notices.subscribe(svc.nc, notices.DELETED, deleted_notices)
    deleted = (await svc.stub.DeleteJob(jobs_pb2.DeleteJobRequest(job=ref(job.id)))).job
    assert not (svc.results.root / f"{job.id}.mp4").exists()
    assert deleted.output_url == "" and deleted.HasField("deleted_at")
    read = await get(svc, job.id)
    assert read.output_url == "" and read.deleted_at == deleted.deleted_at
    assert read.status == jobs_pb2.JOB_STATUS_COMPLETED and read.credits == 10
    await deleted_notices.wait_for(job.id)
    # Deleting again changes nothing and still answers.
    again = (await svc.stub.DeleteJob(jobs_pb2.DeleteJobRequest(job=ref(job.id)))).job
    assert again.deleted_at == deleted.deleted_at


async def test_outputs_past_retention_are_removed(svc: JobService) -> None:
    old, recent = await create(svc), await create(svc)
    await complete(svc, old.id)
    await complete(svc, recent.id)
    # The old one finished TTL_S ago (as far as the sweep can tell).
    recent_row = await svc.store.get(recent.id)
    assert recent_row is not None and recent_row.finished_at is not None
    removed = await svc.retention.sweep(now=recent_row.finished_at + TTL_S + 0.001)
    assert removed == 2
    await complete(svc, (third := await create(svc)).id)
    assert await svc.retention.sweep(now=time.time()) == 0
    assert not (svc.results.root / f"{old.id}.mp4").exists()
    assert (svc.results.root / f"{third.id}.mp4").exists()
    assert (await get(svc, old.id)).output_url == ""
    assert not (await get(svc, old.id)).HasField("deleted_at")


async def test_webhook_attempts_are_listed_and_a_redelivery_makes_one_due(
    svc: JobService,
) -> None:
    job = await create(svc, webhook="https://hooks.example/1")
    busy = await rpc_error(
        svc.stub.RedeliverWebhook(jobs_pb2.RedeliverWebhookRequest(job=ref(job.id)))
    )
    assert busy.details() == "job_processing"
    await complete(svc, job.id)
    (claimed,) = await svc.store.claim_webhooks("me", max_attempts=10)
    await svc.store.record_webhook_attempt(
        claimed.id, "me", False, time.time() + 5, error="HTTP 500", status_code=500, latency_ms=12
    )
    (claimed,) = await svc.store.claim_webhooks("me", max_attempts=10, now=time.time() + 6)
    await svc.store.record_webhook_attempt(claimed.id, "me", False, error="HTTP 410", give_up=True)

    listed = await svc.stub.ListWebhookDeliveries(
        jobs_pb2.ListWebhookDeliveriesRequest(job=ref(job.id))
    )
    assert [d.attempt for d in listed.deliveries] == [1, 2]
    first, second = listed.deliveries
    assert (first.status_code, first.latency_ms, first.error) == (500, 12, "HTTP 500")
    assert first.HasField("next_attempt_at") and not second.HasField("next_attempt_at")
    assert not listed.delivered
    # Given up: nothing is due any more, until a redelivery starts again.
    assert await svc.store.claim_webhooks("me", max_attempts=10, now=time.time() + 3600) == []
    await svc.stub.RedeliverWebhook(jobs_pb2.RedeliverWebhookRequest(job=ref(job.id)))
    assert svc.wakes.count == 1
    (due,) = await svc.store.claim_webhooks("me", max_attempts=10)
    await svc.store.record_webhook_attempt(due.id, "me", True, status_code=204, latency_ms=3)
    listed = await svc.stub.ListWebhookDeliveries(
        jobs_pb2.ListWebhookDeliveriesRequest(job=ref(job.id))
    )
    assert [d.attempt for d in listed.deliveries] == [1, 2, 3]
    assert listed.delivered and listed.deliveries[-1].error == ""


async def test_redelivery_of_a_job_without_webhook_is_refused(svc: JobService) -> None:
    job = await create(svc)
    await complete(svc, job.id)
    error = await rpc_error(
        svc.stub.RedeliverWebhook(jobs_pb2.RedeliverWebhookRequest(job=ref(job.id)))
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "no_webhook")


async def test_progress_comes_from_worker_notices_and_never_goes_down(svc: JobService) -> None:
    job = await create(svc)
    assert (await get(svc, job.id)).progress.stage == jobs_pb2.JOB_STAGE_QUEUED

    async def heartbeat(percent: int, stage: int, eta: int | None, attempt: int = 1) -> None:
        notice = events_pb2.JobProgressNotice(
            job_id=job.id,
            attempt=attempt,
            stage=stage,
            percent=percent,  # type: ignore[arg-type]
        )
        if eta is not None:
            notice.eta_seconds = eta
        await notices.publish(svc.nc, notices.PROGRESS, job.id, notice.SerializeToString())
        await svc.nc.flush()

    async def progress_reads(percent: int) -> jobs_pb2.JobProgress:
        """The job's progress once it reads `percent` (notices are asynchronous)."""
        for _ in range(250):
            progress = (await get(svc, job.id)).progress
            if progress.percent == percent:
                return progress
            await asyncio.sleep(0.02)
        raise AssertionError(f"progress never read {percent} %: {progress}")

    await heartbeat(40, jobs_pb2.JOB_STAGE_RENDERING, 7)
    progress = await progress_reads(40)
    assert progress.stage == jobs_pb2.JOB_STAGE_RENDERING and progress.eta_seconds == 7
    # A second attempt (the first worker crashed) starts over; the percent stays.
    await heartbeat(5, jobs_pb2.JOB_STAGE_DOWNLOADING, None, attempt=2)
    await heartbeat(60, jobs_pb2.JOB_STAGE_RENDERING, 3, attempt=2)
    assert (await progress_reads(60)).eta_seconds == 3
    await svc.stub.CancelJob(jobs_pb2.CancelJobRequest(job=ref(job.id)))
    assert not (await get(svc, job.id)).HasField("progress")
