"""The JobService gRPC API: create and read jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from nats.js import JetStreamContext

from job_service.metrics import JOBS_CREATED
from job_service.queue import publish_job
from job_service.store import IdempotencyConflict, JobRow, JobStore, TooManyProcessing
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common.jobjson import MODEL_NAMES
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        js: JetStreamContext,
        render: Callable[[JobRow], jobs_pb2.Job],
    ) -> None:
        self.store = store
        self.js = js
        self.render = render

    async def CreateJob(
        self, request: jobs_pb2.CreateJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CreateJobResponse:
        if not request.account_id or request.model not in MODEL_NAMES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account_id and model required")
        try:
            row, new = await self.store.create(
                account_id=request.account_id,
                model=request.model,
                form_state=request.form_state.SerializeToString(deterministic=True),
                webhook=request.webhook,
                idempotency_key=request.idempotency_key,
                fingerprint=request.request_fingerprint,
                max_processing=request.max_processing_jobs,
            )
        except TooManyProcessing:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the account already has {request.max_processing_jobs} jobs in processing",
            )
        except IdempotencyConflict:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                "Idempotency-Key was already used with a different request",
            )
        with job_context(row.id):
            if new:
                JOBS_CREATED.labels(MODEL_NAMES[row.model]).inc()
                log.info("job created", extra={"fields": {"model": MODEL_NAMES[row.model]}})
                await self._publish(row)
        return jobs_pb2.CreateJobResponse(job=self.render(row))

    async def _publish(self, row: JobRow) -> None:
        try:
            await publish_job(self.js, row)
        except Exception:
            # The job is stored; the outbox loop publishes it once NATS is back.
            log.exception("publishing job failed; the outbox will retry")
            return
        await self.store.mark_published(row.id)

    async def publish_pending(self, older_than_s: float) -> None:
        """The outbox: publish jobs whose first publish failed."""
        for row in await self.store.unpublished(older_than_s):
            with job_context(row.id):
                await self._publish(row)

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        row = await self.store.get(request.job_id)
        if row is None or row.account_id != request.account_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        assert row is not None
        return jobs_pb2.GetJobResponse(job=self.render(row))
