"""The gRPC channels and stubs of the three services the gateway calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import grpc

from gateway.problems import Problem, service_unavailable
from gateway.settings import GatewaySettings
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.inference.v1 import inference_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc

if TYPE_CHECKING:
    from lipsync.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub as AuthStub
    from lipsync.billing.v1.billing_pb2_grpc import BillingServiceAsyncStub as BillingStub
    from lipsync.inference.v1.inference_pb2_grpc import (
        InferenceServiceAsyncStub as InferenceStub,
    )
    from lipsync.jobs.v1.jobs_pb2_grpc import JobServiceAsyncStub as JobsStub

log = logging.getLogger(__name__)

# Every call is bounded: a stuck service must turn into a 503, not a hung client.
RPC_TIMEOUT_S = 5.0

# The full proto names, which the standard health service is asked about.
SERVICE_NAMES: Mapping[str, str] = {
    "auth": auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    "billing": billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
    "jobs": jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
}

# These codes mean the service could not answer now; a retry may succeed.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


@dataclass
class Backends:
    """Stubs of the auth, billing and job services and the channels under them.

    `channels` are the services readiness depends on. The inference service is
    only needed by POST /api/v1/estimate, so it stays out of readiness: a
    gateway whose workers are scaled to zero still takes jobs.
    """

    channels: Mapping[str, grpc.aio.Channel]
    auth: AuthStub
    billing: BillingStub
    jobs: JobsStub
    inference: InferenceStub | None = None
    inference_channel: grpc.aio.Channel | None = None

    @classmethod
    def from_channels(
        cls,
        auth: grpc.aio.Channel,
        billing: grpc.aio.Channel,
        jobs: grpc.aio.Channel,
        inference: grpc.aio.Channel | None = None,
    ) -> Backends:
        # grpc ships no type hints, so mypy cannot pick the stubs' aio overload.
        return cls(
            channels={"auth": auth, "billing": billing, "jobs": jobs},
            auth=cast("AuthStub", auth_pb2_grpc.AuthServiceStub(auth)),
            billing=cast("BillingStub", billing_pb2_grpc.BillingServiceStub(billing)),
            jobs=cast("JobsStub", jobs_pb2_grpc.JobServiceStub(jobs)),
            inference=(
                cast("InferenceStub", inference_pb2_grpc.InferenceServiceStub(inference))
                if inference is not None
                else None
            ),
            inference_channel=inference,
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        if self.inference_channel is not None:
            await self.inference_channel.close()


def connect(settings: GatewaySettings) -> Backends:
    """Open insecure channels; gRPC connects lazily, so this never blocks."""
    return Backends.from_channels(
        auth=grpc.aio.insecure_channel(settings.auth_addr),
        billing=grpc.aio.insecure_channel(settings.billing_addr),
        jobs=grpc.aio.insecure_channel(settings.jobs_addr),
        inference=(
            grpc.aio.insecure_channel(settings.inference_addr) if settings.inference_addr else None
        ),
    )


def rpc_problem(service: str, error: grpc.aio.AioRpcError) -> Problem:
    """The answer for a call that failed in a way its caller did not expect."""
    fields = {"service": service, "code": error.code().name, "details": error.details()}
    if error.code() in _TRANSIENT:
        log.warning("backend unavailable", extra={"fields": fields})
        return service_unavailable(service)
    log.error("backend call failed", extra={"fields": fields})
    # The detail of an unexpected failure may carry internals; it goes to the log only.
    return Problem(500, "internal_error", "internal error")
