"""How far a worker is with a job, told to job_service as `JobProgressNotice`s.

While a worker holds a job it publishes the job's progress on the plain NATS
subject `lipsync.progress.<job_id>` (`lipsync_common/notices.py`) every
`PUBLISH_EVERY_S` and at each change of stage; job_service keeps the latest as
the job's `progress`, and a lost notice is replaced by the next.

Stages and percent, for one attempt:

* DOWNLOADING, 0 to 10: from the start until the inputs are fetched (5),
  probed and reserved (10);
* QUEUED, 10: waiting for a render slot, only when the worker has to wait;
* RENDERING, 10 to 95, in proportion to the frames done;
* FINISHING, 95 to 99: the output is stored.

The percent never goes down within an attempt. The ETA is the frames left at
the rate measured since the render's first frame report, plus an allowance for
finishing; it is unset until `MIN_MEASURED_S` of rendering were measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

from nats.aio.client import Client

from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common import notices

# Inside the 2 s API.md promises, with room for a late wake-up.
PUBLISH_EVERY_S = 0.8
# A rate measured over less than this swings too much to show.
MIN_MEASURED_S = 0.5
# Closing the encoder and storing the output, after the last frame.
FINISH_ALLOWANCE_S = 1.0

DOWNLOADED_PERCENT = 5
RENDER_FROM_PERCENT = 10
RENDER_TO_PERCENT = 95
STORED_PERCENT = 99
_STAGE_PERCENT = {
    jobs_pb2.JOB_STAGE_DOWNLOADING: 0,
    jobs_pb2.JOB_STAGE_QUEUED: RENDER_FROM_PERCENT,
    jobs_pb2.JOB_STAGE_RENDERING: RENDER_FROM_PERCENT,
    jobs_pb2.JOB_STAGE_FINISHING: RENDER_TO_PERCENT,
}


class Progress:
    """One attempt at a job: its stage, frames and percent.

    `enter` and `reach` are called on the event loop; `frames` from the render
    thread; `notice` from anywhere.
    """

    def __init__(
        self, job_id: str, attempt: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self._clock = clock
        self._lock = threading.Lock()
        self._stage: jobs_pb2.JobStage.ValueType = jobs_pb2.JOB_STAGE_DOWNLOADING
        self._percent = 0
        self._done = 0
        self._total = 0
        # (time, frames done) at the render's first report, and the time of the latest.
        self._first: tuple[float, int] | None = None
        self._latest_at = 0.0
        # Set at each change of stage, for the reporter to publish it at once.
        self.changed = asyncio.Event()

    @property
    def stage(self) -> jobs_pb2.JobStage.ValueType:
        return self._stage

    def enter(self, stage: jobs_pb2.JobStage.ValueType) -> None:
        with self._lock:
            if stage == self._stage:
                return
            self._stage = stage
            self._percent = max(self._percent, _STAGE_PERCENT[stage])
        self.changed.set()

    def reach(self, percent: int) -> None:
        """Raise the percent to at least `percent` (a step within a stage)."""
        with self._lock:
            self._percent = max(self._percent, percent)

    def frames(self, done: int, total: int) -> None:
        """The render's report: `done` of `total` frames written."""
        now = self._clock()
        with self._lock:
            if self._first is None:
                self._first = (now, done)
            self._latest_at = now
            self._done, self._total = done, total
            if total > 0:
                span = RENDER_TO_PERCENT - RENDER_FROM_PERCENT
                rendered = RENDER_FROM_PERCENT + span * min(done, total) // total
                self._percent = max(self._percent, rendered)

    def notice(self) -> events_pb2.JobProgressNotice:
        with self._lock:
            notice = events_pb2.JobProgressNotice(
                job_id=self.job_id,
                attempt=self.attempt,
                stage=self._stage,
                percent=self._percent,
                frames_done=self._done,
                frames_total=self._total,
            )
            eta = self._eta(self._clock())
        if eta is not None:
            notice.eta_seconds = eta
        return notice

    def _eta(self, now: float) -> int | None:
        if self._first is None or self._stage not in (
            jobs_pb2.JOB_STAGE_RENDERING,
            jobs_pb2.JOB_STAGE_FINISHING,
        ):
            return None
        started, done_then = self._first
        measured = self._latest_at - started
        if measured < MIN_MEASURED_S or self._done <= done_then:
            return None
        rate = (self._done - done_then) / measured
        left = (self._total - self._done) / rate + FINISH_ALLOWANCE_S - (now - self._latest_at)
        return max(0, math.ceil(left))


class ProgressReporter:
    """Publishes one attempt's progress while the `async with` block runs."""

    def __init__(self, nc: Client, progress: Progress, every_s: float = PUBLISH_EVERY_S) -> None:
        self.nc = nc
        self.progress = progress
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ProgressReporter:
        self._task = asyncio.create_task(self._run(), name=f"progress-{self.progress.job_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def publish(self) -> None:
        """Send the progress now (the worker does before `completed`, for the last stage)."""
        payload = self.progress.notice().SerializeToString()
        await notices.publish(self.nc, notices.PROGRESS, self.progress.job_id, payload)

    async def _run(self) -> None:
        while True:
            # Cleared before the publish, so a change meanwhile is sent next.
            self.progress.changed.clear()
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.changed.wait(), self.every_s)
