"""Delivers the terminal job object to the job's webhook, signed, with retries.

Delivery runs beside the job, never in its way: a finished job wakes the
sender, whose sweep leases due deliveries (`JobStore.claim_webhooks`) and
starts each as its own task, at most `concurrency` at once, without waiting
for them: no receiver, however slow, delays another. Pending deliveries live
in the job table, so a restart resumes them.

Each delivery is signed per Standard Webhooks (job_service.signing) with the
account's secret. `webhook-id` is the same on every attempt, so receivers can
drop duplicates; `webhook-timestamp` is the time of the attempt. The rules of
API.md ("Webhook delivery rules"):

- only a 2xx is delivered; redirects are not followed, so a 3xx fails;
- an attempt has `timeout_s` in all, from resolving the host to the end of
  the answer's body (a receiver that trickles bytes is cut at the deadline);
- a failed attempt (any error at all: non-2xx, timeout, no secret because
  auth is down, ...) is recorded and retried after a delay that doubles from
  5 s up to 1 h, with jitter, for at least 24 hours after the job finished;
  `Retry-After` on a 429 or 5xx sets that delay instead (at most 1 h);
- `410 Gone` and a URL the guard refuses stop delivery for good, recorded
  with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import functools
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

import grpc
import httpx

from job_service import signing
from job_service.metrics import WEBHOOK_DELIVERIES
from job_service.store import WEBHOOK_LEASE_S, JobRow, JobStore
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.guarded_http import GuardedTransport
from lipsync_common.jobjson import job_to_json
from lipsync_common.logs import job_context
from lipsync_common.netguard import Resolver, UnsafeURLError, parse_url, system_resolver

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 5.0
# Deliveries in flight at once, per replica, and of them at most this many of
# one account: a customer whose receivers hang holds a few senders, never all.
MAX_CONCURRENT_DELIVERIES = 32
MAX_CONCURRENT_PER_ACCOUNT = 4
# The bounds of a delay a receiver asks for with Retry-After; the floor keeps
# `Retry-After: 0` from turning into a tight loop.
RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 3600.0
_DELTA_SECONDS = re.compile(r"[0-9]+")


_LOG_MESSAGES = {
    "delivered": "webhook delivered",
    "gave_up": "webhook delivery stopped",
    "failed": "webhook delivery failed",
}


class Secrets(Protocol):
    async def secret(self, account_id: str) -> str: ...


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff with a cap and jitter, for at least `window_s` in total."""

    first_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    window_s: float = 24 * 3600.0
    # Each delay is shortened by up to this fraction, so that the retries of
    # jobs that failed together spread out.
    jitter: float = 0.1

    def delay(self, failed_attempts: int) -> float:
        """The longest wait after the `failed_attempts`-th failure (1-based)."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, failed_attempts - 1))

    def jittered_delay(self, failed_attempts: int) -> float:
        return self.delay(failed_attempts) * (1 - self.jitter * random.random())

    @property
    def max_attempts(self) -> int:
        """Attempts whose shortest delays add up to the window, and then one more."""
        attempts, elapsed = 1, 0.0
        while elapsed < self.window_s:
            elapsed += self.delay(attempts) * (1 - self.jitter)
            attempts += 1
        return attempts


@dataclass(frozen=True)
class Attempt:
    """How one attempt went."""

    delivered: bool
    # "HTTP 204" on success; otherwise why it failed.
    detail: str
    # No attempt follows (410 Gone, a refused URL).
    give_up: bool = False
    # The receiver's Retry-After, in seconds from now.
    retry_after_s: float | None = None
    # The receiver's answer, when one came: its status and how long it took.
    status_code: int | None = None
    latency_ms: int | None = None


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait that a `Retry-After` value asks for, bounded; None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP dates are in GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return min(RETRY_AFTER_MAX_S, max(RETRY_AFTER_MIN_S, seconds))


class WebhookSender:
    def __init__(
        self,
        store: JobStore,
        render: Callable[[JobRow], jobs_pb2.Job],
        timeout_s: float,
        secrets: Secrets,
        allow_private: bool,
        schedule: RetrySchedule | None = None,
        concurrency: int = MAX_CONCURRENT_DELIVERIES,
        resolver: Resolver = system_resolver,
        per_account: int = MAX_CONCURRENT_PER_ACCOUNT,
    ) -> None:
        self.store = store
        self.render = render
        self.secrets = secrets
        self.schedule = schedule or RetrySchedule()
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.per_account = per_account
        # Deliveries in flight by account.
        self._accounts: collections.Counter[str] = collections.Counter()
        # The lease outlasts an attempt's deadline (plus the secret lookup and
        # the recording), so the next sweep never claims a row in flight.
        self.lease_s = WEBHOOK_LEASE_S + timeout_s
        # The transport resolves each receiver once and connects to the
        # address it checked, so DNS cannot swap in a private one in between.
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            transport=GuardedTransport(allow_private, resolver),
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        # Whether more may be due than the last sweep took (its slots or the
        # accounts' shares were full): a freed slot then sweeps again at once.
        self._backlog = False
        # This replica's name on the deliveries it leases (JobStore.claim_webhooks).
        self.owner = uuid.uuid4().hex

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        # Deliveries cut here stay leased; another sweep retries them when the lease ends.
        tasks = [*self._in_flight, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    def notify(self, row: JobRow) -> None:
        if row.webhook:
            self._wake.set()

    def wake(self) -> None:
        """Sweep now: a delivery was made due (a redelivery)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._sweep()
            try:
                await asyncio.wait_for(self._wake.wait(), SWEEP_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _sweep(self) -> None:
        """Lease as many due deliveries as there are free slots, and start each."""
        free = self.concurrency - len(self._in_flight)
        if free <= 0:
            return
        try:
            busy = [a for a, n in self._accounts.items() if n >= self.per_account]
            due = await self.store.claim_webhooks(
                self.owner,
                self.schedule.max_attempts,
                limit=free,
                lease_s=self.lease_s,
                per_account=self.per_account,
                busy_accounts=busy,
            )
        except Exception:
            log.exception("webhook sweep failed")
            return
        # More may be due when the sweep filled every free slot, or took an
        # account's whole share (its other rows wait for one of its slots).
        claimed = collections.Counter(row.account_id for row in due)
        self._backlog = (
            len(due) == free
            or bool(busy)
            or any(count >= self.per_account for count in claimed.values())
        )
        for row in due:
            self._accounts[row.account_id] += 1
            task = asyncio.create_task(self._deliver_in_slot(row))
            self._in_flight.add(task)
            task.add_done_callback(self._slot_freed)

    def _slot_freed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._backlog:
            self._wake.set()

    async def _deliver_in_slot(self, row: JobRow) -> None:
        try:
            await self.deliver(row)
        except Exception:
            # Only recording can fail here; the lease ends and the row is retried.
            log.exception("webhook attempt could not be recorded")
        finally:
            self._accounts[row.account_id] -= 1
            if self._accounts[row.account_id] <= 0:
                del self._accounts[row.account_id]

    async def deliver(self, row: JobRow) -> bool:
        """Make one attempt and record it; whether it was delivered."""
        with job_context(row.id):
            at = time.time()
            try:
                attempt = await self._attempt(row)
            except Exception as exc:
                # Whatever went wrong, the attempt counts: a row whose attempts
                # raise must not come back at once, ahead of everyone else's.
                log.exception("webhook attempt failed unexpectedly")
                attempt = Attempt(False, f"{type(exc).__name__}: {exc}")
            failed_attempts = row.webhook_attempts + 1
            next_attempt_at = None
            if not (attempt.delivered or attempt.give_up):
                delay = attempt.retry_after_s
                if delay is None:
                    delay = self.schedule.jittered_delay(failed_attempts)
                next_attempt_at = time.time() + delay
            await self.store.record_webhook_attempt(
                row.id,
                self.owner,
                attempt.delivered,
                next_attempt_at,
                error="" if attempt.delivered else attempt.detail,
                give_up=attempt.give_up,
                status_code=attempt.status_code,
                latency_ms=attempt.latency_ms,
                at=at,
            )
            result = (
                "delivered" if attempt.delivered else "gave_up" if attempt.give_up else "failed"
            )
            WEBHOOK_DELIVERIES.labels(result).inc()
            log.info(
                _LOG_MESSAGES[result],
                extra={
                    "fields": {
                        "url": row.webhook,
                        "result": attempt.detail,
                        "attempt": failed_attempts,
                    }
                },
            )
            return attempt.delivered

    async def _attempt(self, row: JobRow) -> Attempt:
        body = json.dumps(job_to_json(self.render(row))).encode()
        msg_id = f"msg_{row.id}"
        timestamp = int(time.time())
        try:
            secret = await self.secrets.secret(row.account_id)
        except grpc.aio.AioRpcError as exc:
            return Attempt(False, f"no signing secret: auth answered {exc.code().name}")
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature(secret, msg_id, timestamp, body),
        }
        sent = time.perf_counter()
        try:
            # One deadline for all of it: httpx's timeout is per read.
            async with asyncio.timeout(self.timeout_s):
                target = parse_url(row.webhook, ("https", "http"))
                async with self._client.stream(
                    "POST", target.url, content=body, headers=headers
                ) as response:
                    latency_ms = round((time.perf_counter() - sent) * 1000)
                    # Read to the end (so the connection can be reused), keeping nothing.
                    async for _ in response.aiter_raw():
                        pass
        except UnsafeURLError as exc:
            return Attempt(False, f"refused: {exc}", give_up=True)
        except TimeoutError:
            return Attempt(False, f"no complete answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        answered = functools.partial(
            Attempt, detail=f"HTTP {status}", status_code=status, latency_ms=latency_ms
        )
        if 200 <= status < 300:
            return answered(delivered=True)
        if status == 410:
            return answered(delivered=False, give_up=True)
        if status == 429 or status >= 500:
            wait = retry_after_s(response.headers.get("retry-after"), time.time())
            return answered(delivered=False, retry_after_s=wait)
        return answered(delivered=False)
