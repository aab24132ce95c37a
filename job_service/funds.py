"""The minimum-charge check a new job must pass, asked of billing_service.

The exact price depends on media durations that only the worker learns, so
billing reserves it there; this check only turns away a request whose account
cannot pay even the shortest possible output, before anything is queued.
"""

from __future__ import annotations

from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2

RPC_TIMEOUT_S = 5.0


class FundsCheck:
    def __init__(self, billing: billing_pb2_grpc.BillingServiceStub) -> None:
        self._billing = billing

    async def shortfall(self, account_id: str, spec: jobs_pb2.JobSpec) -> str:
        """ "" when the account can pay the request's minimum charge, else why not.

        A billing outage propagates as the RPC error: the job is not created.
        """
        response: billing_pb2.CheckFundsResponse = await self._billing.CheckFunds(
            billing_pb2.CheckFundsRequest(
                account_id=account_id, usage=billing_pb2.Usage(spec=spec)
            ),
            timeout=RPC_TIMEOUT_S,
        )
        if response.sufficient:
            return ""
        return f"insufficient credits: need {response.credits}, have {response.available_credits}"
