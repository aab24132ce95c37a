"""Job endpoints: create a job on one of the three models, read a job."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from fastapi import APIRouter, Depends, Header, Request, Security
from fastapi.responses import JSONResponse

from gateway import openapi
from gateway.auth import Authenticator, Principal
from gateway.clients import RPC_TIMEOUT_S, Backends, rpc_problem
from gateway.problems import FieldError, Problem, invalid_parameters
from gateway.validation import (
    JobRequest,
    parse_json_object,
    read_body,
    validate_job_request,
)
from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.jobjson import STATUS_NAMES, job_to_json

RESOLUTIONS = {
    "480p": billing_pb2.RESOLUTION_480P,
    "720p": billing_pb2.RESOLUTION_720P,
}

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
_DESCRIPTIONS = {
    "lipsync-video": "Replace the audio of a video, re-animating the lips to the new audio.",
    "lipsync-image": "Make a talking video of one speaker from a portrait and an audio.",
    "lipsync-image-multi": "Make a conversation from an image of two people and two audios.",
}
# Declared for the docs; gateway.validation checks it with the body.
_IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    description="1 to 255 printable characters; the same key and body within 24 hours "
    "return the same job.",
)


# A job takes seconds to minutes; a client over its cap should not hammer us.
PROCESSING_CAP_RETRY_AFTER_S = 10


def not_found() -> Problem:
    return Problem(404, "not_found", "job not found")


def too_many_processing(cap: int) -> Problem:
    return Problem(
        429,
        "too_many_processing_jobs",
        f"this account already has {cap} jobs in processing; wait for one to finish",
        headers={"Retry-After": str(PROCESSING_CAP_RETRY_AFTER_S)},
    )


class JobRoutes:
    """The handlers, bound to the backends they call."""

    def __init__(
        self, backends: Backends, allow_private_urls: bool, max_processing_jobs: int = 0
    ) -> None:
        self._backends = backends
        self._allow_private_urls = allow_private_urls
        self._max_processing_jobs = max_processing_jobs

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
        await self._check_minimum_charge(principal, job_request)
        job = await self._create_job(principal, job_request)
        return JSONResponse(
            {"id": job.id, "status": STATUS_NAMES.get(job.status, "processing")},
            status_code=202,
            headers={"Location": f"/api/v1/jobs/{job.id}"},
        )

    async def _check_minimum_charge(self, principal: Principal, job: JobRequest) -> None:
        """402 when the balance cannot cover even the shortest possible output.

        The exact price depends on media durations only the worker learns, so
        it is reserved there; this check turns away requests that cannot succeed.
        """
        usage = billing_pb2.Usage(
            model=job.model,
            resolution=RESOLUTIONS[job.form_state.resolution],
            order=job.form_state.order,
        )
        billing = self._backends.billing
        try:
            quote, balance = await asyncio.gather(
                billing.Quote(billing_pb2.QuoteRequest(usage=usage), timeout=RPC_TIMEOUT_S),
                billing.GetBalance(
                    billing_pb2.GetBalanceRequest(account_id=principal.account_id),
                    timeout=RPC_TIMEOUT_S,
                ),
            )
        except grpc.aio.AioRpcError as error:
            raise rpc_problem("billing", error) from None
        if balance.api_credits < quote.credits:
            raise Problem(
                402,
                "insufficient_credits",
                f"insufficient credits: need {quote.credits}, have {balance.api_credits}",
            )

    async def _create_job(self, principal: Principal, job: JobRequest) -> jobs_pb2.Job:
        request = jobs_pb2.CreateJobRequest(
            account_id=principal.account_id,
            model=job.model,
            form_state=job.form_state,
            webhook=job.webhook,
            idempotency_key=job.idempotency_key,
            request_fingerprint=job.fingerprint,
            max_processing_jobs=self._max_processing_jobs,
        )
        try:
            response = await self._backends.jobs.CreateJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise Problem(
                    409,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request",
                ) from None
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise too_many_processing(self._max_processing_jobs) from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                # The job service's own checks; its message is written for users.
                raise invalid_parameters(
                    [FieldError("formState", error.details() or "invalid request")]
                ) from None
            raise rpc_problem("jobs", error) from None
        return response.job

    async def get(self, job_id: str, principal: Principal) -> JSONResponse:
        try:
            canonical_id = str(uuid.UUID(job_id))
        except ValueError:
            raise not_found() from None
        request = jobs_pb2.GetJobRequest(job_id=canonical_id, account_id=principal.account_id)
        try:
            response = await self._backends.jobs.GetJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise not_found() from None
            raise rpc_problem("jobs", error) from None
        # A job changes until it ends; caches must not keep a stale state.
        return JSONResponse(job_to_json(response.job), headers={"Cache-Control": "no-store"})


def router(
    backends: Backends,
    authenticator: Authenticator,
    allow_private_urls: bool,
    max_processing_jobs: int = 0,
) -> APIRouter:
    handlers = JobRoutes(backends, allow_private_urls, max_processing_jobs)
    api = APIRouter(prefix="/api/v1", tags=["jobs"], dependencies=[Security(openapi.BEARER)])
    authenticated = Depends(authenticator.api_key)

    def add_create_route(endpoint: str) -> None:
        async def create_job(
            request: Request,
            principal: Principal = authenticated,
            idempotency_key: str | None = _IDEMPOTENCY_KEY,
        ) -> JSONResponse:
            return await handlers.create(endpoint, request, principal, idempotency_key)

        api.add_api_route(
            f"/{endpoint}",
            create_job,
            methods=["POST"],
            name=endpoint,
            summary=_DESCRIPTIONS[endpoint],
            status_code=202,
            response_model=openapi.JobCreated,
            responses={
                202: {"description": "Accepted: the job was created and is processing."},
                **_CREATE_ERRORS,
            },
            openapi_extra=openapi.request_body(endpoint),
        )

    for endpoint in ("lipsync-video", "lipsync-image", "lipsync-image-multi"):
        add_create_route(endpoint)

    @api.get(
        "/jobs/{id}",
        name="get-job",
        summary="Read a job of your account.",
        response_model=openapi.Job,
        responses=_GET_ERRORS,
    )
    async def get_job(id: str, principal: Principal = authenticated) -> JSONResponse:
        return await handlers.get(id, principal)

    return api
