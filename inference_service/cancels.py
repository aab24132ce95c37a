"""Cancel flags of the jobs a worker holds, raised when job_service cancels one.

job_service cancels a job by storing a `canceled` event in the job's events
subject, then sending a plain NATS cancel notice (`lipsync_common/notices.py`).
A worker hears it two ways, either of which sets the job's `CancelFlag`:

* the notice, through one subscription per process: the fast path;
* every `POLL_S` seconds, a look at each held job's latest event, for a notice
  lost (NATS reconnecting, a worker that subscribed a moment too late).

The pipeline races every wait (downloads, probing, Reserve, a render slot)
against the flag and checks it between steps; in a render, the engine's
per-batch callback raises `JobCanceled` once the flag is set, so a render stops
within a batch. A canceled job publishes nothing more: the `canceled` event is
already its outcome, and billing releases its reservation on it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from lipsync.jobs.v1 import events_pb2
from lipsync_common import notices
from lipsync_common.jetstream import ended_event

log = logging.getLogger(__name__)

T = TypeVar("T")

# The fallback for a lost notice: well inside the 5 s a cancel may take.
POLL_S = 2.0


class JobCanceled(Exception):
    """The job was canceled while this worker held it."""


class CancelFlag:
    """Set once when a job is canceled; read from any thread, awaited on the event loop."""

    def __init__(self) -> None:
        # Two views of one flag: the render thread reads the first, coroutines await the second.
        self._flag = threading.Event()
        self._event = asyncio.Event()
        self.set_at: float | None = None

    def set(self) -> None:
        """Raise the flag (on the event loop: asyncio.Event is not thread-safe)."""
        if self.set_at is None:
            self.set_at = time.monotonic()
        self._flag.set()
        self._event.set()

    def is_set(self) -> bool:
        return self._flag.is_set()

    def check(self) -> None:
        """Raise JobCanceled if the flag is set; safe from any thread."""
        if self._flag.is_set():
            raise JobCanceled

    async def race(self, work: Awaitable[T]) -> T:
        """Await `work`, unless the flag is set first: then cancel it and raise JobCanceled.

        Work that finished anyway wins (its result, or its error, is returned).
        The canceled work is awaited until it has unwound, so that a download
        has closed its file before the job's work dir is removed. A thread run
        by `asyncio.to_thread` cannot be stopped: it is abandoned.
        """
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait((task,))
        if not task.cancelled() and task.exception() is not None:
            log.debug("canceled work ended with an error", exc_info=task.exception())
        raise JobCanceled


class Cancels:
    """The cancel flags of every job this process holds, kept up to date from NATS."""

    def __init__(self, nc: Client, js: JetStreamContext, poll_s: float = POLL_S) -> None:
        self.nc = nc
        self.js = js
        self.poll_s = poll_s
        # A list per job: two deliveries of one job may overlap on one worker.
        self._flags: dict[str, list[CancelFlag]] = {}
        self._sub: Subscription | None = None
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await notices.subscribe(self.nc, notices.CANCEL, self._on_notice)
        self._poller = asyncio.create_task(self._poll_loop(), name="cancel-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as error:  # a connection already closed
                log.debug(
                    "cancel subscription not removed", extra={"fields": {"error": str(error)}}
                )
            self._sub = None

    @contextmanager
    def watch(self, job_id: str) -> Iterator[CancelFlag]:
        """A flag that is set if the job is canceled while the block runs.

        Enter it before looking at the job's events: a cancel stored after that
        look is then caught by the notice or the poll.
        """
        flag = CancelFlag()
        self._flags.setdefault(job_id, []).append(flag)
        try:
            yield flag
        finally:
            flags = self._flags[job_id]
            flags.remove(flag)
            if not flags:
                del self._flags[job_id]

    def cancel(self, job_id: str, how: str) -> None:
        """Set the job's flags; `how` says what told us, for the log."""
        for flag in self._flags.get(job_id, ()):
            if not flag.is_set():
                log.info("job canceled", extra={"fields": {"job_id": job_id, "heard_by": how}})
                flag.set()

    def _on_notice(self, job_id: str, _payload: bytes) -> None:
        self.cancel(job_id, "cancel notice")

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll()
            except Exception:  # a bug here must not end the fallback for good
                log.exception("polling for cancels failed")

    async def poll(self) -> None:
        """Set the flag of every held job whose latest event ended it."""
        job_ids = [
            job_id for job_id, flags in self._flags.items() if not all(f.is_set() for f in flags)
        ]
        ended = await asyncio.gather(
            *(ended_event(self.js, job_id) for job_id in job_ids), return_exceptions=True
        )
        for job_id, event in zip(job_ids, ended, strict=True):
            if isinstance(event, events_pb2.JobEvent):
                # Canceled, most likely; or failed by job_service's reaper: stop either way.
                self.cancel(job_id, f"event {event.WhichOneof('kind')}")
            elif isinstance(event, BaseException):
                # NATS is reconnecting; the next poll tries again.
                log.warning(
                    "could not read a job's events",
                    extra={"fields": {"job_id": job_id, "error": repr(event)}},
                )
