"""What follows a job's end, whoever ended it: a worker's event, the reaper's, a cancel.

Once the terminal state is stored, the job's progress is forgotten, its
webhook is woken, and every gateway hears that it ended (`Prefer: wait`
callers are answered at once, lipsync_common/notices.py).
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client

from job_service.progress import ProgressBoard
from job_service.store import JobRow
from lipsync_common import notices


class Notified(Protocol):
    def notify(self, row: JobRow) -> None: ...


class Endings:
    def __init__(self, nc: Client, progress: ProgressBoard, webhooks: Notified) -> None:
        self._nc = nc
        self._progress = progress
        self._webhooks = webhooks

    async def ended(self, row: JobRow) -> None:
        self._progress.forget(row.id)
        self._webhooks.notify(row)
        await notices.publish(self._nc, notices.ENDED, row.id)
