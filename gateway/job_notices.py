"""This replica's subscription to job_service's plain NATS notices (lipsync_common.notices).

Two notices matter to a gateway:

* `ended`: a job's terminal state is stored; requests waiting on it with
  `Prefer: wait` are woken (gateway/job_waiters.py);
* `deleted`: a job's output was deleted; the job leaves this replica's cache
  of ended jobs (gateway/ended_jobs.py), so it reads `output: null` at once.

Both can be lost without harm (a waiter reads the job when its time is up, a
cache entry expires), so the gateway does not depend on NATS: it connects in
the background, starts and serves while NATS is down, and the client
reconnects forever and renews the subscriptions after each reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.client import Client

from lipsync_common import notices

log = logging.getLogger(__name__)

KINDS = (notices.ENDED, notices.DELETED)

Handler = Callable[[str], None]


class JobNotices:
    """Dispatches each notice's job id to the handlers registered for its kind.

    Handlers may be registered before or after `start`; they run on the event
    loop, so they must not block.
    """

    def __init__(self, url: str = "", name: str = "gateway") -> None:
        # An empty URL: never connect (tests, and a gateway without NATS).
        self._url = url
        self._name = name
        self._handlers: dict[str, list[Handler]] = {kind: [] for kind in KINDS}
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._unreachable_logged = False
        self._closing = False
        # Set once the subscriptions are on the server: notices are heard from then on.
        self.subscribed = asyncio.Event()

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind].append(handler)

    def start(self) -> None:
        """Connect and subscribe in the background; returns at once."""
        if self._url and self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-notices")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None and not self._client.is_closed:
            with contextlib.suppress(Exception):
                await self._client.close()

    def dispatch(self, kind: str, job_id: str) -> None:
        for handler in self._handlers[kind]:
            try:
                handler(job_id)
            except Exception:
                log.exception("notice handler failed", extra={"fields": {"kind": kind}})

    async def _run(self) -> None:
        try:
            await self._connect_and_subscribe()
        except Exception:
            # Without notices the gateway still serves; waits just run their full time.
            log.exception("job notices unavailable", extra={"fields": {"nats": self._url}})

    async def _connect_and_subscribe(self) -> None:
        client = Client()
        self._client = client
        # With max_reconnect_attempts=-1 the first connect also retries forever,
        # so this returns only once NATS is reached.
        await client.connect(
            self._url,
            name=self._name,
            max_reconnect_attempts=-1,
            # nats-py annotates it int, but it is seconds and takes a float.
            reconnect_time_wait=0.5,  # type: ignore[arg-type]
            connect_timeout=5,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._unreachable_logged = False
        for kind in KINDS:
            await notices.subscribe(client, kind, self._receiver(kind))
        # The server has the subscriptions once a round trip has passed them.
        await client.flush()
        self.subscribed.set()
        log.info("listening for job notices", extra={"fields": {"nats": self._url}})

    def _receiver(self, kind: str) -> Callable[[str, bytes], None]:
        def receive(job_id: str, payload: bytes) -> None:
            self.dispatch(kind, job_id)

        return receive

    async def _on_error(self, error: Exception) -> None:
        # Every failed attempt lands here, twice a second while NATS is down: say it once.
        if not self._unreachable_logged and not self._closing:
            self._unreachable_logged = True
            log.warning(
                "NATS unreachable; Prefer: wait answers when its time is up",
                extra={"fields": {"nats": self._url, "error": str(error) or type(error).__name__}},
            )

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("NATS disconnected", extra={"fields": {"nats": self._url}})

    async def _on_reconnected(self) -> None:
        self._unreachable_logged = False
        log.info("NATS reconnected", extra={"fields": {"nats": self._url}})
