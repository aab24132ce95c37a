"""How far each job in processing is, from the workers' progress notices.

Workers publish a `JobProgressNotice` on `lipsync.progress.<job_id>` at least
every 2 s while they hold a job (lipsync_common/notices.py). Every job_service
replica hears all of them and keeps the latest per job here, in memory: a
replica that restarts knows a job's progress again within one heartbeat, and
nothing is written to the database for it.

The percent shown never goes down (API.md "Progress"), even when a job starts
over on another worker after a crash: the highest percent heard is kept, the
stage and the estimate come from the latest notice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common import notices

log = logging.getLogger(__name__)

# Jobs tracked at once; past this the least recently heard of is dropped
# (and reads "queued" until its next heartbeat).
MAX_JOBS = 100_000


class ProgressBoard:
    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self._jobs: OrderedDict[str, jobs_pb2.JobProgress] = OrderedDict()
        self._max_jobs = max_jobs
        self._subscription: Subscription | None = None

    async def start(self, nc: Client) -> None:
        self._subscription = await notices.subscribe(nc, notices.PROGRESS, self.heard)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    def heard(self, job_id: str, payload: bytes) -> None:
        try:
            notice = events_pb2.JobProgressNotice.FromString(payload)
        except Exception:
            log.warning("unreadable progress notice", extra={"fields": {"job_id": job_id}})
            return
        if notice.job_id != job_id:
            return
        previous = self._jobs.get(job_id)
        progress = jobs_pb2.JobProgress(
            stage=notice.stage,
            percent=max(0, min(100, notice.percent), previous.percent if previous else 0),
        )
        if notice.HasField("eta_seconds"):
            progress.eta_seconds = max(0, notice.eta_seconds)
        self._jobs[job_id] = progress
        self._jobs.move_to_end(job_id)
        while len(self._jobs) > self._max_jobs:
            self._jobs.popitem(last=False)

    def get(self, job_id: str) -> jobs_pb2.JobProgress:
        """The job's progress; `queued` at 0 % when no worker has reported yet."""
        found = self._jobs.get(job_id)
        if found is None:
            return jobs_pb2.JobProgress(stage=jobs_pb2.JOB_STAGE_QUEUED, percent=0)
        return found

    def forget(self, job_id: str) -> None:
        """Drop an ended job."""
        self._jobs.pop(job_id, None)
