"""Requests of this replica waiting for a job to end (`Prefer: wait=N`), woken by notices.

A waiting request registers here under its job's id *before* it reads the job,
then sleeps until `wake(job_id)` (a `lipsync.notices.ended.<id>` notice, see
gateway/job_notices.py) or its time runs out, and reads the job again. Since
the registration comes first, a job that ends after the first read always
wakes its waiter; a notice lost while NATS is away only makes the waiter sleep
its full time. Nothing polls job_service.

Waiting is cheap but not free (a request, an open connection and an event
each), so it is bounded per replica and per account: past either bound a
request is answered at once, without waiting, and one account cannot take
every slot of a replica. On shutdown every waiter is woken at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator

from prometheus_client import Gauge

DEFAULT_MAX_WAITERS = 10_000
DEFAULT_MAX_WAITERS_PER_ACCOUNT = 100

WAITERS = Gauge(
    "lipsync_gateway_job_waiters",
    "Requests of this gateway replica waiting for a job to end (Prefer: wait).",
)


class JobWaiters:
    """Bounded registry of waiting requests, keyed by job id; one event loop only."""

    def __init__(
        self,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        max_per_account: int = DEFAULT_MAX_WAITERS_PER_ACCOUNT,
    ) -> None:
        self._max_waiters = max_waiters
        self._max_per_account = max_per_account
        self._events: dict[str, set[asyncio.Event]] = {}
        self._accounts: Counter[str] = Counter()
        self._count = 0
        self._closed = False

    @property
    def count(self) -> int:
        """How many requests are waiting now."""
        return self._count

    def waiting_on(self, job_id: str) -> int:
        return len(self._events.get(job_id, ()))

    @contextlib.contextmanager
    def register(self, job_id: str, account_id: str) -> Iterator[asyncio.Event | None]:
        """An event set when the job ends, for the time of the `with` block.

        None when a bound is reached: the caller answers without waiting.
        """
        if (
            self._closed
            or self._count >= self._max_waiters
            or self._accounts[account_id] >= self._max_per_account
        ):
            yield None
            return
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        self._accounts[account_id] += 1
        self._count += 1
        WAITERS.inc()
        try:
            yield event
        finally:
            events = self._events.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[job_id]
            self._accounts[account_id] -= 1
            if self._accounts[account_id] <= 0:
                del self._accounts[account_id]
            self._count -= 1
            WAITERS.dec()

    def wake(self, job_id: str) -> None:
        """Wake every request waiting on the job (its end is stored)."""
        for event in self._events.get(job_id, ()):
            event.set()

    def close(self) -> None:
        """Wake every waiter and take no more: the replica is shutting down.

        Waiting requests then answer the job as it is now, instead of being cut
        off when the shutdown grace period ends.
        """
        self._closed = True
        for events in self._events.values():
            for event in events:
                event.set()


async def sleep_until_woken(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether `event` was set within `timeout_s` seconds."""
    if timeout_s <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        return False
    return True
