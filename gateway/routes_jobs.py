"""Job endpoints: create a job on one of the three models, read a job, wait for its end.

`Prefer: wait=N` (gateway/prefer.py) on a create endpoint or on
`GET /api/v1/jobs/{id}` holds the answer until the job ends or N seconds have
passed. The wait is served from job_service's `ended` notices
(gateway/job_waiters.py, gateway/job_notices.py): the request registers as a
waiter before it reads the job, and reads it again, past the cache, once woken
or out of time. Each read is its own GetJob under the usual 5 s deadline, so no
gRPC deadline cuts a wait, and nothing polls.

Once a create call has stored its job, it never answers an error: a read that
fails after it answers the job as CreateJob returned it, since a 5xx must mean
that no job exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping

import grpc
from fastapi import APIRouter, Header, Request, Security
from fastapi.responses import JSONResponse, Response

from gateway import openapi, prefer
from gateway.auth import Authenticator, Principal
from gateway.bodies import JOB_MODELS, JobModel
from gateway.clients import RPC_TIMEOUT_S, Backends, rpc_problem
from gateway.ended_jobs import EndedJobs
from gateway.job_uploads import JobUploads
from gateway.job_waiters import JobWaiters, sleep_until_woken
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

log = logging.getLogger(__name__)

_CREATE_ERRORS = openapi.problem_responses(
    {
        400: "the body is not JSON, or not an object",
        401: "missing, malformed, unknown or revoked API key",
        402: "the API credits are below the minimum charge of the request",
        409: "the Idempotency-Key was used with a different body",
        413: "the body is over 64 KiB",
        422: "a parameter is missing, of the wrong type, out of range, or unknown; or the"
        " `Prefer` header asks for a wait that is not an integer from 1 to 60",
        429: "rate limit exceeded, or too many jobs in processing; see Retry-After",
        503: "a backend service is unavailable; retry shortly",
    }
)
_GET_ERRORS = openapi.problem_responses(
    {
        401: "missing, malformed, unknown or revoked API key or session token",
        404: "no such job for this account",
        422: "the `Prefer` header asks for a wait that is not an integer from 1 to 60",
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
# Declared for the docs; gateway.prefer reads every `Prefer` line of the request.
_PREFER = Header(
    None,
    alias=prefer.HEADER,
    description="RFC 7240. `wait=N`, N an integer from 1 to 60: hold the answer until the job"
    " ends or N seconds have passed; the answer then carries `Preference-Applied: wait=N`."
    " Other preferences are ignored.",
)
_APPLIED_HEADER = {
    prefer.APPLIED_HEADER: {
        "description": "`wait=N` when the `Prefer: wait=N` of the request was honoured.",
        "schema": {"type": "string"},
    }
}


_NO_STORE = {"Cache-Control": "no-store"}
# A job takes seconds to minutes; a client over its cap should not hammer us.
PROCESSING_CAP_RETRY_AFTER_S = 10


def not_found() -> Problem:
    return Problem(404, "not_found", "job not found")


def canonical_job_id(job_id: str) -> str:
    """The job id as job_service writes it; anything but a UUID is the same 404 as unknown."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise not_found() from None


def is_processing(job: jobs_pb2.Job) -> bool:
    return job.status in (jobs_pb2.JOB_STATUS_UNSPECIFIED, jobs_pb2.JOB_STATUS_PROCESSING)


def encode_job(job: jobs_pb2.Job) -> bytes:
    """The job's public JSON, as the bytes JSONResponse would send."""
    return json.dumps(
        job_to_json(job), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


def job_response(
    body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    # A job changes until it ends; caches must not keep a stale state.
    return Response(
        body,
        status_code=status_code,
        media_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
    )


def too_many_processing(reason: str) -> Problem:
    """429 for job_service's cap on jobs in processing; `reason` is its message."""
    return Problem(
        429,
        "too_many_processing_jobs",
        f"{reason or 'the account has too many jobs in processing'}; wait for one to finish",
        headers={"Retry-After": str(PROCESSING_CAP_RETRY_AFTER_S)},
    )


def _now() -> float:
    return asyncio.get_running_loop().time()


class JobRoutes:
    """The handlers, bound to the backends they call."""

    def __init__(
        self,
        backends: Backends,
        allow_private_urls: bool,
        ended: EndedJobs | None = None,
        waiters: JobWaiters | None = None,
        uploads: JobUploads | None = None,
    ) -> None:
        self._backends = backends
        self._allow_private_urls = allow_private_urls
        # Checks the upload URLs a body names (this account's, still there); None: no uploads.
        self._uploads = uploads
        self._ended = ended if ended is not None else EndedJobs()
        self._waiters = waiters if waiters is not None else JobWaiters()

    async def create(
        self,
        endpoint: str,
        request: Request,
        principal: Principal,
        idempotency_key: str | None,
    ) -> Response:
        started = _now()
        raw = await read_body(request)
        body = parse_json_object(raw)
        wait_s: int | None = None
        prefer_errors: list[FieldError] = []
        try:
            wait_s = prefer.parse_wait(request.headers.getlist(prefer.HEADER))
        except prefer.InvalidPreference as error:
            prefer_errors.append(error.field_error())
        job_request = validate_job_request(
            endpoint,
            body,
            idempotency_key,
            allow_private_urls=self._allow_private_urls,
            header_errors=prefer_errors,
            upload_errors=(
                await self._uploads.field_errors(body, principal.account_id)
                if self._uploads
                else ()
            ),
        )
        job = await self._create_job(principal, job_request)
        location = {"Location": f"/api/v1/jobs/{job.id}"}
        if wait_s is not None:
            with self._waiters.register(job.id, principal.account_id) as woken:
                if woken is not None:
                    if is_processing(job):
                        # Registered first, read next: an end stored after this read wakes us.
                        job = await self._read_after_create(job, principal)
                    if is_processing(job):
                        await sleep_until_woken(woken, started + wait_s - _now())
                        job = await self._read_after_create(job, principal)
                    status_code = 202 if is_processing(job) else 200
                    headers = {**location, **prefer.applied(wait_s)}
                    return job_response(self._remember(job), status_code, headers)
        # No wait asked, or no room to wait: the plain answer, as without the header.
        return JSONResponse(
            {"id": job.id, "status": STATUS_NAMES.get(job.status, "processing")},
            status_code=202,
            headers=location,
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

    async def _read_after_create(self, job: jobs_pb2.Job, principal: Principal) -> jobs_pb2.Job:
        """The job read again; `job` itself when the read fails, since it exists."""
        try:
            return await self._read(job.id, principal)
        except Problem as problem:
            log.warning(
                "job not read after create; answering it as created",
                extra={"fields": {"job_id": job.id, "status": problem.status}},
            )
            return job

    async def get(self, job_id: str, request: Request, principal: Principal) -> Response:
        started = _now()
        canonical_id = canonical_job_id(job_id)
        wait_s = prefer.wait_preference(request.headers.getlist(prefer.HEADER))
        cached = self._ended.get(canonical_id, principal.account_id)
        if cached is not None:
            # Ended: nothing to wait for, and the wait is honoured.
            return job_response(cached, headers=prefer.applied(wait_s) if wait_s else None)
        if wait_s is None:
            job = await self._read(canonical_id, principal)
            return job_response(self._remember(job))
        with self._waiters.register(canonical_id, principal.account_id) as woken:
            # Registered first, read next: an end stored after this read wakes us.
            job = await self._read(canonical_id, principal)
            if woken is None:
                # No room to wait: answered at once, and the header says it was not honoured.
                return job_response(self._remember(job))
            if is_processing(job):
                await sleep_until_woken(woken, started + wait_s - _now())
                job = await self._read(canonical_id, principal)
        return job_response(self._remember(job), headers=prefer.applied(wait_s))

    def _remember(self, job: jobs_pb2.Job) -> bytes:
        """The job's JSON, kept for the next read if the job has ended."""
        body = encode_job(job)
        self._ended.put(job, body)
        return body

    async def _read(self, canonical_id: str, principal: Principal) -> jobs_pb2.Job:
        request = jobs_pb2.GetJobRequest(job_id=canonical_id, account_id=principal.account_id)
        try:
            response = await self._backends.jobs.GetJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise not_found() from None
            raise rpc_problem("jobs", error) from None
        return response.job


def router(
    backends: Backends,
    authenticator: Authenticator,
    allow_private_urls: bool,
    ended: EndedJobs | None = None,
    waiters: JobWaiters | None = None,
    uploads: JobUploads | None = None,
) -> APIRouter:
    handlers = JobRoutes(backends, allow_private_urls, ended, waiters, uploads)
    api = APIRouter(prefix="/api/v1", tags=["jobs"])
    # A job may be created with a key or, from the web console, a session
    # token (API.md "The web console"); either way it is charged to API credits.
    any_credential = Security(authenticator.any_credential)

    def add_create_route(model: JobModel) -> None:
        async def create_job(
            request: Request,
            principal: Principal = any_credential,
            idempotency_key: str | None = _IDEMPOTENCY_KEY,
            prefer_header: str | None = _PREFER,
        ) -> Response:
            return await handlers.create(model.name, request, principal, idempotency_key)

        api.add_api_route(
            f"/{model.name}",
            create_job,
            methods=["POST"],
            name=model.name,
            summary=model.summary,
            status_code=202,
            # Two shapes of 202 (with and without Prefer: wait), declared below.
            response_model=None,
            responses={
                200: {
                    "description": "With `Prefer: wait=N`: the job ended within N seconds; the"
                    " full job object.",
                    "headers": _APPLIED_HEADER,
                    "content": {"application/json": {"schema": openapi.ref(openapi.Job)}},
                },
                202: {
                    "description": "Accepted: the job was created and is processing. Without"
                    " `Prefer: wait`, `{id, status}`; with it, the full job object, still"
                    " processing after N seconds.",
                    "headers": _APPLIED_HEADER,
                    "content": {
                        "application/json": {
                            "schema": {
                                "anyOf": [
                                    openapi.ref(openapi.JobCreated),
                                    openapi.ref(openapi.Job),
                                ]
                            }
                        }
                    },
                },
                **_CREATE_ERRORS,
            },
            openapi_extra=openapi.job_body(model.name),
        )

    for model in JOB_MODELS.values():
        add_create_route(model)

    @api.get(
        "/jobs/{id}",
        name="get-job",
        summary="Read a job of your account; with `Prefer: wait=N`, once it ends or N s pass.",
        response_model=openapi.Job,
        responses={200: {"headers": _APPLIED_HEADER}, **_GET_ERRORS},
    )
    async def get_job(
        id: str,
        request: Request,
        principal: Principal = any_credential,
        prefer_header: str | None = _PREFER,
    ) -> Response:
        return await handlers.get(id, request, principal)

    return api
