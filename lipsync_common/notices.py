"""Plain NATS notices about jobs: sent to every replica that listens, kept by no stream.

JetStream carries what must not be lost (jobs, their events). These notices
carry what every replica of a service should hear at once and what can be
lost without harm, because each reader has its own fallback:

* `lipsync.progress.<job_id>`: a `JobProgressNotice` from the worker rendering
  the job, at least every 2 s, to every job_service replica (the job's
  `progress`). A lost one is replaced by the next.
* `lipsync.notices.ended.<job_id>`: from job_service once a job's end is
  stored, to every gateway, which answers its `Prefer: wait` callers. When
  lost, a waiter reads the job when its wait runs out.
* `lipsync.notices.deleted.<job_id>`: from job_service once a job's output is
  deleted, to every gateway, which drops the job from its cache of ended jobs.
  When lost, the entry expires (`gateway/ended_jobs.py`).
* `lipsync.notices.cancel.<job_id>`: from job_service once a job is canceled,
  to every worker, which stops rendering it. When lost, the worker finds the
  `canceled` event in the stream at its next heartbeat.

The job id is the subject's last token; only progress notices carry a payload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

PROGRESS = "lipsync.progress"
ENDED = "lipsync.notices.ended"
DELETED = "lipsync.notices.deleted"
CANCEL = "lipsync.notices.cancel"


def subject(kind: str, job_id: str) -> str:
    """The subject of a notice of `kind` (one of the constants above) about a job."""
    return f"{kind}.{job_id}"


def job_id_of(notice_subject: str) -> str:
    return notice_subject.rsplit(".", 1)[-1]


async def publish(nc: Client, kind: str, job_id: str, payload: bytes = b"") -> None:
    """Send a notice; never raises, because every reader can do without it."""
    try:
        await nc.publish(subject(kind, job_id), payload)
    except Exception as error:  # a closed or reconnecting connection
        log.warning(
            "notice not sent",
            extra={"fields": {"subject": subject(kind, job_id), "error": str(error)}},
        )


async def subscribe(
    nc: Client, kind: str, on_notice: Callable[[str, bytes], Awaitable[None] | None]
) -> Subscription:
    """Call `on_notice(job_id, payload)` for every notice of `kind`, on any job.

    The subscription is renewed by the client after a reconnect.
    """

    async def handle(msg: Msg) -> None:
        try:
            result = on_notice(job_id_of(msg.subject), msg.data)
            if result is not None:
                await result
        except Exception:
            log.exception("notice handler failed", extra={"fields": {"subject": msg.subject}})

    return await nc.subscribe(f"{kind}.*", cb=handle)
