"""The minimum-charge check a new job must pass, asked of billing_service.

The exact price depends on media durations that only the worker learns, so
billing reserves it there, and that reservation is what protects the balance.
This check only turns away a request whose account cannot pay even the
shortest possible output, before anything is queued. It is advisory by
nature: jobs accepted but not yet reserved are not counted against it.

So a "yes" is kept for `fresh_s` per account, model and resolution (the
minimum charge of a request depends on nothing else, API.md "Billing"): an
account submitting many jobs asks billing about once a second, not once per
job. A "no" is never kept, so credits just bought count at once. A "yes" that
has turned stale within that second lets a job in that then fails at its
reservation with "insufficient credits", charging nothing: the same outcome
as for jobs submitted together before any of them reserved.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import model_name

RPC_TIMEOUT_S = 5.0
DEFAULT_FRESH_S = 1.0
MAX_ENTRIES = 10_000


class FundsCheck:
    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceStub,
        fresh_s: float = DEFAULT_FRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._billing = billing
        self._fresh_s = fresh_s
        self._clock = clock
        # (account, model, resolution) -> until when billing's "yes" is taken as is.
        self._sufficient: OrderedDict[tuple[str, str, int], float] = OrderedDict()

    async def shortfall(self, account_id: str, spec: jobs_pb2.JobSpec) -> str:
        """ "" when the account can pay the request's minimum charge, else why not.

        A billing outage propagates as the RPC error: the job is not created.
        """
        key = (account_id, model_name(spec), spec.resolution)
        now = self._clock()
        until = self._sufficient.get(key)
        if until is not None and now < until:
            return ""
        response: billing_pb2.CheckFundsResponse = await self._billing.CheckFunds(
            billing_pb2.CheckFundsRequest(
                account_id=account_id, usage=billing_pb2.Usage(spec=spec)
            ),
            timeout=RPC_TIMEOUT_S,
        )
        if not response.sufficient:
            self._sufficient.pop(key, None)
            return (
                f"insufficient credits: need {response.credits}, have {response.available_credits}"
            )
        if self._fresh_s > 0:
            self._sufficient[key] = now + self._fresh_s
            self._sufficient.move_to_end(key)
            while len(self._sufficient) > MAX_ENTRIES:
                self._sufficient.popitem(last=False)
        return ""
