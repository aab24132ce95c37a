"""The JobService gRPC API: create and read jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from job_service.funds import FundsCheck
from job_service.metrics import JOBS_CREATED
from job_service.outbox import Outbox
from job_service.store import IdempotencyConflict, JobRow, JobStore, TooManyProcessing
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common.job_spec import model_name
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        outbox: Outbox,
        render: Callable[[JobRow], jobs_pb2.Job],
        funds: FundsCheck,
        max_processing: int,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.render = render
        self.funds = funds
        # Jobs in processing per account before CreateJob refuses; 0: no cap.
        self.max_processing = max_processing

    async def CreateJob(
        self, request: jobs_pb2.CreateJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CreateJobResponse:
        model = model_name(request.spec)
        if not request.account_id or not model:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account_id and spec required")
        try:
            row, new = await self._create(request, model, context)
        except TooManyProcessing:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the account already has {self.max_processing} jobs in processing",
            )
        except IdempotencyConflict:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                "Idempotency-Key was already used with a different request",
            )
        with job_context(row.id):
            if new:
                JOBS_CREATED.labels(model).inc()
                log.info("job created", extra={"fields": {"model": model}})
                self.outbox.enqueue(row)
        return jobs_pb2.CreateJobResponse(job=self.render(row))

    async def _create(
        self, request: jobs_pb2.CreateJobRequest, model: str, context: grpc.aio.ServicerContext
    ) -> tuple[JobRow, bool]:
        """The job and whether it is new; a retry never meets the funds check or the cap."""
        if request.idempotency_key:
            # The retried job's own reservation may be what the balance no longer covers.
            found = await self.store.replay(
                request.account_id, request.idempotency_key, request.request_fingerprint
            )
            if found is not None:
                return found, False
        try:
            shortfall = await self.funds.shortfall(request.account_id, request.spec)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                # Billing cannot price the spec; its message says why.
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.details() or "")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "billing is unavailable")
        if shortfall:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, shortfall)
        return await self.store.create(
            account_id=request.account_id,
            model=model,
            spec=request.spec.SerializeToString(deterministic=True),
            webhook=request.webhook,
            idempotency_key=request.idempotency_key,
            fingerprint=request.request_fingerprint,
            max_processing=self.max_processing,
        )

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        row = await self.store.get(request.job_id)
        if row is None or row.account_id != request.account_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        assert row is not None
        return jobs_pb2.GetJobResponse(job=self.render(row))
