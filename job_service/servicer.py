"""The JobService gRPC API: create, read, list and control jobs.

Every call names the account asking, and a job of another account is
NOT_FOUND, the same as an unknown one, unless the operator's tool asks for any
account (`any_account`, never set by the gateway). Refusals that the gateway
turns into a problem `code` carry that code as their details
(`job_finished`, `job_processing`, `no_webhook`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import grpc
from nats.aio.client import Client

from job_service.cancels import Canceler, JobAlreadyEnded
from job_service.funds import FundsCheck
from job_service.metrics import JOBS_CREATED
from job_service.outbox import Outbox
from job_service.progress import ProgressBoard
from job_service.representation import timestamp
from job_service.retention import Retention
from job_service.store import (
    Cursor,
    Delivery,
    IdempotencyConflict,
    JobRow,
    JobStore,
    TooManyProcessing,
)
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common import notices
from lipsync_common.job_spec import model_name
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

DEFAULT_PAGE = 20
MAX_PAGE = 100


def delivery_proto(delivery: Delivery) -> jobs_pb2.WebhookDelivery:
    message = jobs_pb2.WebhookDelivery(
        attempt=delivery.attempt, at=timestamp(delivery.at), error=delivery.error
    )
    if delivery.status_code is not None:
        message.status_code = delivery.status_code
    if delivery.latency_ms is not None:
        message.latency_ms = delivery.latency_ms
    if delivery.next_attempt_at is not None:
        message.next_attempt_at.CopyFrom(timestamp(delivery.next_attempt_at))
    return message


@dataclass(frozen=True)
class JobControl:
    """What the job control calls act through, besides the store."""

    nc: Client
    canceler: Canceler
    retention: Retention
    progress: ProgressBoard
    # Wakes the webhook sender, so that a redelivery goes out now.
    wake_webhooks: Callable[[], None]


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        outbox: Outbox,
        render: Callable[[JobRow], jobs_pb2.Job],
        funds: FundsCheck,
        max_processing: int,
        control: JobControl,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self._render_row = render
        self.control = control
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

    def render(self, row: JobRow) -> jobs_pb2.Job:
        job = self._render_row(row)
        if not row.terminal:
            job.progress.CopyFrom(self.control.progress.get(row.id))
        return job

    async def _owned(
        self, job_id: str, account_id: str, any_account: bool, context: grpc.aio.ServicerContext
    ) -> JobRow:
        """The job, if the caller may see it; NOT_FOUND otherwise."""
        row = await self.store.get(job_id) if job_id else None
        if row is None or not (any_account or row.account_id == account_id):
            await _abort(context, grpc.StatusCode.NOT_FOUND, "job not found")
        return row

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        row = await self._owned(request.job_id, request.account_id, request.any_account, context)
        return jobs_pb2.GetJobResponse(job=self.render(row))

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        if not request.account_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "account_id required")
        limit = request.limit or DEFAULT_PAGE
        if not 1 <= limit <= MAX_PAGE:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 1 to {MAX_PAGE}"
            )
        after = None
        if request.cursor:
            try:
                after = Cursor.decode(request.cursor)
            except ValueError:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "cursor is not valid")
        rows, following = await self.store.list_jobs(
            request.account_id,
            limit,
            status=request.status or None,
            model=request.model,
            after=after,
        )
        return jobs_pb2.ListJobsResponse(
            jobs=[self.render(row) for row in rows],
            next_cursor=following.encode() if following else "",
        )

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        ref = request.job
        row = await self._owned(ref.job_id, ref.account_id, ref.any_account, context)
        if row.terminal:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "job_finished")
        with job_context(row.id):
            try:
                canceled = await self.control.canceler.cancel(
                    row, by="operator" if ref.any_account else "api"
                )
            except JobAlreadyEnded:
                await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "job_finished")
            except Exception:
                # NATS down, or the job's events kept racing: nothing was canceled.
                log.exception("cancel failed")
                await _abort(context, grpc.StatusCode.UNAVAILABLE, "cancel could not be applied")
        return jobs_pb2.CancelJobResponse(job=self.render(canceled))

    async def DeleteJob(
        self, request: jobs_pb2.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.DeleteJobResponse:
        ref = request.job
        row = await self._owned(ref.job_id, ref.account_id, ref.any_account, context)
        if not row.terminal:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "job_processing")
        with job_context(row.id):
            # The file first: once the record says deleted, nothing would remove it.
            if row.output_key and row.output_removed_at is None:
                if not await self.control.retention.remove(row.output_key):
                    await _abort(
                        context, grpc.StatusCode.UNAVAILABLE, "the output could not be removed"
                    )
            deleted = await self.store.remove_output(row.id)
            assert deleted is not None  # terminal jobs stay terminal
            await notices.publish(self.control.nc, notices.DELETED, row.id)
            log.info("job output deleted")
        return jobs_pb2.DeleteJobResponse(job=self.render(deleted))

    async def ListWebhookDeliveries(
        self, request: jobs_pb2.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListWebhookDeliveriesResponse:
        ref = request.job
        row = await self._owned(ref.job_id, ref.account_id, ref.any_account, context)
        deliveries = await self.store.webhook_deliveries(row.id)
        return jobs_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_proto(d) for d in deliveries],
            delivered=row.webhook_delivered_at is not None,
        )

    async def RedeliverWebhook(
        self, request: jobs_pb2.RedeliverWebhookRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.RedeliverWebhookResponse:
        ref = request.job
        row = await self._owned(ref.job_id, ref.account_id, ref.any_account, context)
        if not row.webhook:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "no_webhook")
        if not row.terminal or not await self.store.redeliver(row.id):
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "job_processing")
        with job_context(row.id):
            log.info("webhook redelivery requested")
        self.control.wake_webhooks()
        return jobs_pb2.RedeliverWebhookResponse()


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str
) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError("abort returns only by raising")
