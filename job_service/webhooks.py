"""Delivers the terminal job object to the job's webhook, signed, with retries.

Delivery runs beside the job, never in its way: a finished job wakes the
sender, which POSTs from its own task. Pending deliveries live in the job
table, so a restart resumes them.

Each delivery is signed per Standard Webhooks (job_service.signing) with the
account's secret. `webhook-id` is the same on every attempt, so receivers can
drop duplicates; `webhook-timestamp` is the time of the attempt. A failed
attempt (non-2xx, timeout, refused address, or no secret because auth is
down) is retried after a delay that doubles from 5 s up to 1 h, for at least
24 hours after the job finished.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
import httpx

from job_service import signing
from job_service.metrics import WEBHOOK_DELIVERIES
from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.jobjson import job_to_json
from lipsync_common.logs import job_context
from lipsync_common.netguard import UnsafeURLError, check_url

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 5.0


class Secrets(Protocol):
    async def secret(self, account_id: str) -> str: ...


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff with a cap, for at least `window_s` in total."""

    first_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    window_s: float = 24 * 3600.0

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failure (1-based)."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, failed_attempts - 1))

    @property
    def max_attempts(self) -> int:
        """Attempts whose delays add up to the window, and then one more."""
        attempts, elapsed = 1, 0.0
        while elapsed < self.window_s:
            elapsed += self.delay(attempts)
            attempts += 1
        return attempts


class WebhookSender:
    def __init__(
        self,
        store: JobStore,
        render: Callable[[JobRow], jobs_pb2.Job],
        timeout_s: float,
        secrets: Secrets,
        allow_private: bool,
        schedule: RetrySchedule | None = None,
    ) -> None:
        self.store = store
        self.render = render
        self.secrets = secrets
        self.allow_private = allow_private
        self.schedule = schedule or RetrySchedule()
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # This replica's name on the deliveries it leases (JobStore.claim_webhooks).
        self.owner = uuid.uuid4().hex

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()

    def notify(self, row: JobRow) -> None:
        if row.webhook:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                due = await self.store.claim_webhooks(self.owner, self.schedule.max_attempts)
                await asyncio.gather(*(self.deliver(row) for row in due))
            except Exception:
                log.exception("webhook sweep failed")
            try:
                await asyncio.wait_for(self._wake.wait(), SWEEP_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def deliver(self, row: JobRow) -> bool:
        with job_context(row.id):
            body = json.dumps(job_to_json(self.render(row))).encode()
            msg_id = f"msg_{row.id}"
            timestamp = int(time.time())
            ok = False
            try:
                secret = await self.secrets.secret(row.account_id)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signing.signature(secret, msg_id, timestamp, body),
                }
                await check_url(row.webhook, self.allow_private, ("https", "http"))
                response = await self._client.post(row.webhook, content=body, headers=headers)
                ok = 200 <= response.status_code < 300
                detail = f"HTTP {response.status_code}"
            except grpc.aio.AioRpcError as exc:
                detail = f"no signing secret: auth answered {exc.code().name}"
            except UnsafeURLError as exc:
                detail = str(exc)
            except httpx.HTTPError as exc:
                detail = f"{type(exc).__name__}: {exc}"
            failed_attempts = row.webhook_attempts + 1
            next_attempt_at = None if ok else time.time() + self.schedule.delay(failed_attempts)
            await self.store.record_webhook_attempt(row.id, self.owner, ok, next_attempt_at)
            WEBHOOK_DELIVERIES.labels("delivered" if ok else "failed").inc()
            log.info(
                "webhook delivered" if ok else "webhook delivery failed",
                extra={
                    "fields": {"url": row.webhook, "result": detail, "attempt": failed_attempts}
                },
            )
            return ok
