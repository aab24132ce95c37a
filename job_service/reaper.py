"""Fails jobs whose worker message ran out of deliveries.

A worker that crashes mid-job never acks; JetStream redelivers the job up to
`WORKER_MAX_DELIVER` times and then announces it on an advisory subject. The
reaper turns that announcement into a `failed` event, so the job does not stay
in `processing` forever and billing releases whatever was reserved.
"""

from __future__ import annotations

import json
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from lipsync.jobs.v1 import events_pb2
from lipsync_common.jetstream import (
    JOBS_STREAM,
    WORKER_MAX_DELIVER,
    events_subject,
    max_deliveries_advisory_subject,
)
from lipsync_common.logs import job_context

log = logging.getLogger(__name__)

GAVE_UP = (
    f"the job could not be processed after {WORKER_MAX_DELIVER} attempts; "
    "nothing was charged, please try again"
)


class Reaper:
    def __init__(self, nc: Client, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js
        self._sub: Subscription | None = None

    async def start(self) -> None:
        # A queue group: with several job_service replicas, one handles each advisory.
        self._sub = await self.nc.subscribe(
            max_deliveries_advisory_subject(), queue="job-service", cb=self._on_advisory
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_advisory(self, msg: Msg) -> None:
        try:
            seq = int(json.loads(msg.data)["stream_seq"])
            stored = await self.js.get_msg(JOBS_STREAM, seq)
        except Exception:
            log.exception("max-deliveries advisory could not be resolved")
            return
        request = events_pb2.JobRequested()
        request.ParseFromString(stored.data or b"")
        with job_context(request.job_id):
            event = events_pb2.JobEvent(
                job_id=request.job_id,
                account_id=request.account_id,
                failed=events_pb2.JobFailed(error=GAVE_UP),
            )
            event.occurred_at.GetCurrentTime()
            await self.js.publish(
                events_subject(request.job_id),
                event.SerializeToString(),
                headers={"Nats-Msg-Id": f"{request.job_id}:failed"},
            )
            # The work queue keeps an unacked message forever; it is dealt with now.
            await self.js.delete_msg(JOBS_STREAM, seq)
            log.warning("job failed after exhausting deliveries")
