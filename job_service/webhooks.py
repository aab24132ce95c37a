"""Delivers the terminal job object to the job's webhook.

Delivery runs beside the job, never in its way: a finished job wakes the
sender, which POSTs from its own task. Pending deliveries live in the job
table, so a restart resumes them. A failed attempt is retried on the next
sweep, up to `webhook_attempts` times.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import httpx

from job_service.metrics import WEBHOOK_DELIVERIES
from job_service.store import JobRow, JobStore
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.jobjson import job_to_json
from lipsync_common.logs import job_context
from lipsync_common.netguard import UnsafeURLError, check_url

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 5.0


class WebhookSender:
    def __init__(
        self,
        store: JobStore,
        render: Callable[[JobRow], jobs_pb2.Job],
        timeout_s: float,
        max_attempts: int,
        allow_private: bool,
    ) -> None:
        self.store = store
        self.render = render
        self.max_attempts = max_attempts
        self.allow_private = allow_private
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
                due = await self.store.webhooks_due(self.max_attempts)
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
            headers = {
                "content-type": "application/json",
                "webhook-id": f"msg_{row.id}",
                "webhook-timestamp": str(int(time.time())),
            }
            ok = False
            try:
                await check_url(row.webhook, self.allow_private, ("https", "http"))
                response = await self._client.post(row.webhook, content=body, headers=headers)
                ok = 200 <= response.status_code < 300
                detail = f"HTTP {response.status_code}"
            except UnsafeURLError as exc:
                detail = str(exc)
            except httpx.HTTPError as exc:
                detail = f"{type(exc).__name__}: {exc}"
            await self.store.record_webhook_attempt(row.id, ok)
            WEBHOOK_DELIVERIES.labels("delivered" if ok else "failed").inc()
            log.info(
                "webhook delivered" if ok else "webhook delivery failed",
                extra={"fields": {"url": row.webhook, "result": detail}},
            )
            return ok
