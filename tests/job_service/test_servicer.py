"""CreateJob/GetJob over real gRPC, publishing to a real JetStream work queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from billing_service.store import WALLET_API
from lipsync.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc
from tests.billing_service.billing_harness import BillingHarness, running_billing
from tests.conftest import NatsProcess
from tests.job_service.service_harness import running_job_service
from tests.job_specs import image_spec

ACCOUNT = "acct"


CAP = 3


@pytest.fixture
async def billing(tmp_path: Path) -> AsyncIterator[BillingHarness]:
    async with running_billing(tmp_path) as harness:
        await harness.ledger.grant(ACCOUNT, 1000, WALLET_API, "test credits")
        yield harness


@pytest.fixture
async def service(
    tmp_path: Path, nats_server: str, billing: BillingHarness
) -> AsyncIterator[tuple[jobs_pb2_grpc.JobServiceStub, object]]:
    async with running_job_service(tmp_path, nats_server, billing, max_processing=CAP) as svc:
        yield svc.stub, svc.queue


def create_request(
    key: str = "", fingerprint: str = "fp", account: str = ACCOUNT
) -> jobs_pb2.CreateJobRequest:
    return jobs_pb2.CreateJobRequest(
        account_id=account,
        spec=image_spec(),
        idempotency_key=key,
        request_fingerprint=fingerprint,
    )


async def queued(sub: object) -> list[events_pb2.JobRequested]:
    try:
        msgs = await sub.fetch(batch=10, timeout=0.5)  # type: ignore[attr-defined]
    except TimeoutError:  # nats-py raises both its own and the bare asyncio one
        return []
    out = []
    for msg in msgs:
        request = events_pb2.JobRequested()
        request.ParseFromString(msg.data)
        out.append(request)
        await msg.ack()
    return out


async def test_create_job_stores_and_queues_it(service: tuple) -> None:
    stub, sub = service
    job = (await stub.CreateJob(create_request())).job
    assert job.status == jobs_pb2.JOB_STATUS_PROCESSING
    (request,) = await queued(sub)
    assert request.job_id == job.id and request.spec == image_spec()
    assert job.spec == image_spec()
    got = (await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job.id, account_id=ACCOUNT))).job
    assert got.id == job.id


async def test_an_idempotent_retry_neither_creates_nor_queues_again(service: tuple) -> None:
    stub, sub = service
    first = (await stub.CreateJob(create_request(key="k1"))).job
    again = (await stub.CreateJob(create_request(key="k1"))).job
    assert again.id == first.id
    assert [r.job_id for r in await queued(sub)] == [first.id]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateJob(create_request(key="k1", fingerprint="other"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_job_of_another_account_is_not_found(service: tuple) -> None:
    stub, _ = service
    job = (await stub.CreateJob(create_request())).job
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job.id, account_id="someone-else"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_new_job_over_the_processing_cap_is_resource_exhausted(service) -> None:
    stub, _ = service
    first = [await stub.CreateJob(create_request(key=f"k{n}")) for n in range(CAP)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateJob(create_request())
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{CAP} jobs in processing" in (raised.value.details() or "")
    # A retry of an existing job is never refused by the cap.
    assert (await stub.CreateJob(create_request(key="k0"))).job.id == first[0].job.id


async def test_an_account_below_the_minimum_charge_is_refused(service) -> None:
    stub, sub = service
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateJob(create_request(account="penniless"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "insufficient credits: need 10, have 0"
    assert await queued(sub) == []


async def test_a_spec_without_a_model_is_invalid(service) -> None:
    stub, _ = service
    request = create_request()
    request.spec.ClearField("lipsync_image")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateJob(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_retry_is_answered_even_when_its_reservation_took_the_balance(
    service, billing: BillingHarness
) -> None:
    stub, _ = service
    await billing.ledger.grant("tight", 10, WALLET_API, "exactly one minimum charge")
    first = (await stub.CreateJob(create_request(key="k1", account="tight"))).job
    # The worker reserved the job's price: nothing is left for a new job.
    await billing.ledger.reserve(
        job_id=first.id, account_id="tight", credits=10, billed_seconds=5, model="", resolution=""
    )
    again = (await stub.CreateJob(create_request(key="k1", account="tight"))).job
    assert again.id == first.id
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateJob(create_request(key="k2", account="tight"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_with_nats_down_a_job_is_still_accepted_within_the_callers_deadline(
    service, restartable_nats: NatsProcess
) -> None:
    stub, _ = service
    await asyncio.to_thread(restartable_nats.stop)
    # The gateway's deadline is 5 s; a publish waiting on NATS used to outlast it.
    job = (await stub.CreateJob(create_request(), timeout=2)).job
    assert job.status == jobs_pb2.JOB_STATUS_PROCESSING
    await asyncio.to_thread(restartable_nats.start)
