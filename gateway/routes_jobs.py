"""Job endpoints: create a job on one of the three models, read a job."""

from __future__ import annotations

import json
import uuid

import grpc
from fastapi import APIRouter, Header, Request, Security
from fastapi.responses import JSONResponse, Response

from gateway import openapi
from gateway.auth import Authenticator, Principal
from gateway.bodies import JOB_MODELS, JobModel
from gateway.clients import RPC_TIMEOUT_S, Backends, rpc_problem
from gateway.ended_jobs import EndedJobs
from gateway.problems import FieldError, Problem, invalid_parameters
from gateway.validation import (
    JobRequest,
    parse_json_object,
    read_body,
    validate_job_request,
)
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import STATUS_NAMES
from lipsync_common.jobjson import job_to_json

_CREATE_ERRORS = openapi.problem_responses(
    {
        400: "the body is not JSON, or not an object",
        401: "missing, malformed, unknown or revoked API key",
        402: "the API credits are below the minimum charge of the request",
        403: "a session token was sent; jobs need an API key",
        409: "the Idempotency-Key was used with a different body",
        413: "the body is over 64 KiB",
        422: "a parameter is missing, of the wrong type, out of range, or unknown",
        429: "rate limit exceeded, or too many jobs in processing; see Retry-After",
        503: "a backend service is unavailable; retry shortly",
    }
)
_GET_ERRORS = openapi.problem_responses(
    {
        401: "missing, malformed, unknown or revoked API key",
        403: "a session token was sent; jobs need an API key",
        404: "no such job for this account",
        429: "rate limit exceeded; Retry-After says when to come back",
        503: "a backend service is unavailable; retry shortly",
    }
)
# Declared for the docs; gateway.validation checks it with the body.
_IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    description="1 to 255 printable characters; the same key and body within 24 hours "
    "return the same job.",
)


_NO_STORE = {"Cache-Control": "no-store"}
# A job takes seconds to minutes; a client over its cap should not hammer us.
PROCESSING_CAP_RETRY_AFTER_S = 10


def not_found() -> Problem:
    return Problem(404, "not_found", "job not found")


def too_many_processing(reason: str) -> Problem:
    """429 for job_service's cap on jobs in processing; `reason` is its message."""
    return Problem(
        429,
        "too_many_processing_jobs",
        f"{reason or 'the account has too many jobs in processing'}; wait for one to finish",
        headers={"Retry-After": str(PROCESSING_CAP_RETRY_AFTER_S)},
    )


class JobRoutes:
    """The handlers, bound to the backends they call."""

    def __init__(self, backends: Backends, allow_private_urls: bool) -> None:
        self._backends = backends
        self._allow_private_urls = allow_private_urls
        self._ended = EndedJobs()

    async def create(
        self,
        endpoint: str,
        request: Request,
        principal: Principal,
        idempotency_key: str | None,
    ) -> JSONResponse:
        raw = await read_body(request)
        body = parse_json_object(raw)
        job_request = validate_job_request(
            endpoint, body, idempotency_key, allow_private_urls=self._allow_private_urls
        )
        job = await self._create_job(principal, job_request)
        return JSONResponse(
            {"id": job.id, "status": STATUS_NAMES.get(job.status, "processing")},
            status_code=202,
            headers={"Location": f"/api/v1/jobs/{job.id}"},
        )

    async def _create_job(self, principal: Principal, job: JobRequest) -> jobs_pb2.Job:
        request = jobs_pb2.CreateJobRequest(
            account_id=principal.account_id,
            spec=job.spec,
            webhook=job.webhook,
            idempotency_key=job.idempotency_key,
            request_fingerprint=job.fingerprint,
        )
        try:
            response = await self._backends.jobs.CreateJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.ALREADY_EXISTS:
                raise Problem(
                    409,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request",
                ) from None
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                # job_service asked billing; its message says what is needed and what is there.
                raise Problem(
                    402, "insufficient_credits", error.details() or "insufficient credits"
                ) from None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise too_many_processing(error.details() or "") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                # The job service's own checks; its message is written for users.
                raise invalid_parameters(
                    [FieldError("formState", error.details() or "invalid request")]
                ) from None
            raise rpc_problem("jobs", error) from None
        return response.job

    async def get(self, job_id: str, principal: Principal) -> Response:
        try:
            canonical_id = str(uuid.UUID(job_id))
        except ValueError:
            raise not_found() from None
        body = self._ended.get(canonical_id, principal.account_id)
        if body is None:
            job = await self._read(canonical_id, principal)
            # The bytes JSONResponse would send, kept for the next read.
            body = json.dumps(
                job_to_json(job), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
            self._ended.put(job, body)
        # A job changes until it ends; caches must not keep a stale state.
        return Response(body, media_type="application/json", headers=_NO_STORE)

    async def _read(self, canonical_id: str, principal: Principal) -> jobs_pb2.Job:
        request = jobs_pb2.GetJobRequest(job_id=canonical_id, account_id=principal.account_id)
        try:
            response = await self._backends.jobs.GetJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise not_found() from None
            raise rpc_problem("jobs", error) from None
        return response.job


def router(backends: Backends, authenticator: Authenticator, allow_private_urls: bool) -> APIRouter:
    handlers = JobRoutes(backends, allow_private_urls)
    api = APIRouter(prefix="/api/v1", tags=["jobs"])
    authenticated = Security(authenticator.key_only)

    def add_create_route(model: JobModel) -> None:
        async def create_job(
            request: Request,
            principal: Principal = authenticated,
            idempotency_key: str | None = _IDEMPOTENCY_KEY,
        ) -> JSONResponse:
            return await handlers.create(model.name, request, principal, idempotency_key)

        api.add_api_route(
            f"/{model.name}",
            create_job,
            methods=["POST"],
            name=model.name,
            summary=model.summary,
            status_code=202,
            response_model=openapi.JobCreated,
            responses={
                202: {"description": "Accepted: the job was created and is processing."},
                **_CREATE_ERRORS,
            },
            openapi_extra=openapi.job_body(model.name),
        )

    for model in JOB_MODELS.values():
        add_create_route(model)

    @api.get(
        "/jobs/{id}",
        name="get-job",
        summary="Read a job of your account.",
        response_model=openapi.Job,
        responses=_GET_ERRORS,
    )
    async def get_job(id: str, principal: Principal = authenticated) -> Response:
        return await handlers.get(id, principal)

    return api
