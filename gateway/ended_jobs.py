"""This gateway replica's cache of ended jobs' JSON, so re-reading one skips job_service.

A job that has ended (`completed`, `failed`, `canceled`) does not change any
more: its object, signed output URL included, is the same on every read. So
`GET /api/v1/jobs/{id}` of an ended job is answered from here for up to
`ttl_s`, which is also how long the end of the output's retention may be seen
late. A job still processing is never cached: its state is read from
job_service on every request. Whoever makes an ended job change must drop it
from every replica's cache: a delete drops it here at once
(gateway/routes_job_control.py) and from the other replicas on job_service's
`deleted` notice (gateway/job_notices.py); a lost notice leaves at most `ttl_s`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from lipsync.jobs.v1 import jobs_pb2

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TTL_S = 60.0


@dataclass(frozen=True)
class _Entry:
    account_id: str
    body: bytes
    expires: float


class EndedJobs:
    """Least-recently-used, bounded; ids of other accounts' jobs never hit."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock

    def get(self, job_id: str, account_id: str) -> bytes | None:
        """The cached JSON body of an ended job of this account, or None."""
        entry = self._entries.get(job_id)
        if entry is None or entry.account_id != account_id:
            return None
        if self._clock() >= entry.expires:
            del self._entries[job_id]
            return None
        self._entries.move_to_end(job_id)
        return entry.body

    def put(self, job: jobs_pb2.Job, body: bytes) -> None:
        """Keep the body of `job` if it has ended; a processing job is not kept."""
        if job.status in (jobs_pb2.JOB_STATUS_UNSPECIFIED, jobs_pb2.JOB_STATUS_PROCESSING):
            return
        self._entries[job.id] = _Entry(job.account_id, body, self._clock() + self._ttl_s)
        self._entries.move_to_end(job.id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._entries.pop(job_id, None)
