"""Job control (API.md "Job control"): list, cancel, delete, webhook deliveries, redeliver.

Every call takes an API key or a session token (the console calls them with
its session) and sees only the caller's own jobs: job_service answers
NOT_FOUND for another account's job, the same 404 as an unknown one.

job_service refuses what the job's state does not allow with
FAILED_PRECONDITION and a one-word reason (`job_finished`, `job_processing`,
`no_webhook`); each becomes a 409 with that word as its `code`.

A cancel or a delete changes an ended job's object, so this replica drops the
job from its cache of ended jobs at once; the other replicas drop it when
job_service's `deleted` notice arrives (gateway/job_notices.py), and a cancel
only ever ends a job that no cache holds yet.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from fastapi import APIRouter, Query, Security
from fastapi.responses import JSONResponse, Response

from gateway import openapi
from gateway.auth import Authenticator, Principal
from gateway.clients import RPC_TIMEOUT_S, Backends, rpc_problem
from gateway.ended_jobs import EndedJobs
from gateway.job_waiters import JobWaiters
from gateway.problems import FieldError, Problem, invalid_parameters
from gateway.routes_jobs import (
    canonical_job_id,
    encode_job,
    is_processing,
    job_response,
    not_found,
)
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import STATUSES_BY_NAME
from lipsync_common.jobjson import deliveries_to_json, job_to_json

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Far longer than any cursor job_service writes; junk is refused before the call.
MAX_CURSOR_CHARS = 500

_NO_STORE = {"Cache-Control": "no-store"}
_AUTH_ERRORS = {
    401: "missing, malformed, unknown or revoked API key or session token",
    429: "rate limit exceeded; Retry-After says when to come back",
    503: "a backend service is unavailable; retry shortly",
}
_JOB_ERRORS = {**_AUTH_ERRORS, 404: "no such job for this account"}

# The 409s: job_service's reason word -> what the client is told.
JOB_FINISHED = "job_finished"
JOB_PROCESSING = "job_processing"
NO_WEBHOOK = "no_webhook"
_CANCEL_CONFLICTS = {JOB_FINISHED: "the job has already ended; there is nothing to cancel"}
_DELETE_CONFLICTS = {JOB_PROCESSING: "the job is still processing; cancel it first"}
_REDELIVER_CONFLICTS = {
    NO_WEBHOOK: "the job has no webhook",
    JOB_PROCESSING: "the job is still processing; its webhook is sent when it ends",
}


def _conflicts(conflicts: Mapping[str, str]) -> str:
    return "; ".join(f"`{code}`: {text}" for code, text in conflicts.items())


def _refusal(error: grpc.aio.AioRpcError, conflicts: Mapping[str, str]) -> Problem:
    """The answer for a job control call job_service refused."""
    code = error.code()
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
        return not_found()
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        # The reason is one word; anything after a colon would be an explanation.
        reason = (error.details() or "").split(":", 1)[0].strip()
        if reason in conflicts:
            return Problem(409, reason, conflicts[reason])
    return rpc_problem("jobs", error)


class JobControlRoutes:
    def __init__(self, backends: Backends, ended: EndedJobs, waiters: JobWaiters) -> None:
        self._jobs = backends.jobs
        self._ended = ended
        self._waiters = waiters

    async def list(
        self, principal: Principal, status: str | None, model: str | None, limit: int, cursor: str
    ) -> JSONResponse:
        request = jobs_pb2.ListJobsRequest(
            account_id=principal.account_id,
            status=jobs_pb2.JobStatus.ValueType(STATUSES_BY_NAME[status] if status else 0),
            model=model or "",
            limit=limit,
            cursor=cursor,
        )
        try:
            page = await self._jobs.ListJobs(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                # Everything else was checked here; job_service only judges the cursor.
                raise invalid_parameters(
                    [FieldError("cursor", "cursor is not one this API returned")]
                ) from None
            raise rpc_problem("jobs", error) from None
        return JSONResponse(
            {
                "data": [job_to_json(job) for job in page.jobs],
                "next_cursor": page.next_cursor or None,
            },
            headers=_NO_STORE,
        )

    def _ref(self, job_id: str, principal: Principal) -> jobs_pb2.JobRef:
        return jobs_pb2.JobRef(job_id=canonical_job_id(job_id), account_id=principal.account_id)

    async def cancel(self, job_id: str, principal: Principal) -> Response:
        ref = self._ref(job_id, principal)
        try:
            response = await self._jobs.CancelJob(
                jobs_pb2.CancelJobRequest(job=ref), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, _CANCEL_CONFLICTS) from None
        self._ended.forget(ref.job_id)
        if not is_processing(response.job):
            # This replica's waiters need not wait for job_service's notice to come round.
            self._waiters.wake(ref.job_id)
        return job_response(encode_job(response.job))

    async def delete(self, job_id: str, principal: Principal) -> Response:
        ref = self._ref(job_id, principal)
        try:
            await self._jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job=ref), timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, _DELETE_CONFLICTS) from None
        self._ended.forget(ref.job_id)
        return Response(status_code=204)

    async def deliveries(self, job_id: str, principal: Principal) -> JSONResponse:
        ref = self._ref(job_id, principal)
        try:
            response = await self._jobs.ListWebhookDeliveries(
                jobs_pb2.ListWebhookDeliveriesRequest(job=ref), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, {}) from None
        return JSONResponse(deliveries_to_json(response), headers=_NO_STORE)

    async def redeliver(self, job_id: str, principal: Principal) -> JSONResponse:
        ref = self._ref(job_id, principal)
        try:
            await self._jobs.RedeliverWebhook(
                jobs_pb2.RedeliverWebhookRequest(job=ref), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, _REDELIVER_CONFLICTS) from None
        return JSONResponse(
            {"id": ref.job_id, "status": "redelivering"}, status_code=202, headers=_NO_STORE
        )


def router(
    backends: Backends, authenticator: Authenticator, ended: EndedJobs, waiters: JobWaiters
) -> APIRouter:
    handlers = JobControlRoutes(backends, ended, waiters)
    api = APIRouter(prefix="/api/v1", tags=["jobs"])
    any_credential = Security(authenticator.any_credential)
    status_query = Query(None, description="Only jobs in this state.")
    model_query = Query(None, description="Only jobs of this model (the creating endpoint).")
    limit_query = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Jobs per page.")
    cursor_query = Query(
        "", max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the last page."
    )

    @api.get(
        "/jobs",
        name="list-jobs",
        summary="List your account's jobs, newest first, a page at a time.",
        response_model=openapi.JobList,
        responses=openapi.problem_responses(
            {**_AUTH_ERRORS, 422: "status, model or limit invalid, or a cursor not from this API"}
        ),
    )
    async def list_jobs(
        principal: Principal = any_credential,
        status: openapi.StatusName | None = status_query,
        model: openapi.ModelName | None = model_query,
        limit: int = limit_query,
        cursor: str = cursor_query,
    ) -> JSONResponse:
        return await handlers.list(principal, status, model, limit, cursor)

    @api.post(
        "/jobs/{id}/cancel",
        name="cancel-job",
        summary="Cancel a job in processing; it reads `canceled` within 5 s and costs nothing.",
        response_model=openapi.Job,
        responses=openapi.problem_responses(
            {**_JOB_ERRORS, 409: f"the job has already ended ({_conflicts(_CANCEL_CONFLICTS)})"}
        ),
    )
    async def cancel_job(id: str, principal: Principal = any_credential) -> Response:
        return await handlers.cancel(id, principal)

    @api.delete(
        "/jobs/{id}",
        name="delete-job",
        summary="Delete an ended job's output and inputs; the job reads `output: null` and"
        " `deletedAt`.",
        status_code=204,
        responses=openapi.problem_responses(
            {**_JOB_ERRORS, 409: f"the job is still processing ({_conflicts(_DELETE_CONFLICTS)})"}
        ),
    )
    async def delete_job(id: str, principal: Principal = any_credential) -> Response:
        return await handlers.delete(id, principal)

    @api.get(
        "/jobs/{id}/webhook-deliveries",
        name="list-webhook-deliveries",
        summary="Every attempt to deliver the job's webhook, oldest first.",
        response_model=openapi.WebhookDeliveries,
        responses=openapi.problem_responses(_JOB_ERRORS),
    )
    async def list_webhook_deliveries(
        id: str, principal: Principal = any_credential
    ) -> JSONResponse:
        return await handlers.deliveries(id, principal)

    @api.post(
        "/jobs/{id}/webhook-deliveries/redeliver",
        name="redeliver-webhook",
        summary="Send the ended job's webhook again now, with the same webhook-id.",
        status_code=202,
        response_model=openapi.RedeliveryAccepted,
        responses=openapi.problem_responses(
            {
                **_JOB_ERRORS,
                409: "no webhook, or the job is still processing"
                f" ({_conflicts(_REDELIVER_CONFLICTS)})",
            }
        ),
    )
    async def redeliver_webhook(id: str, principal: Principal = any_credential) -> JSONResponse:
        return await handlers.redeliver(id, principal)

    return api
