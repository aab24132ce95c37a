"""The suite's own NATS client: watches job events and progress live, reads and replays the stream.

One thread runs one asyncio loop with one connection (reconnecting forever,
like the services, so it outlives the suite's NATS restarts). It:

* records when each job's events and progress notices arrive (plain NATS
  subscriptions see JetStream publishes too), which is how the suite picks
  the moment to kill a worker mid-render and tells when a canceled render
  went quiet;
* reads LIPSYNC_EVENTS back, message by message, for the final figures
  (the `started` event's `occurred_at` is when a worker began the job);
* re-publishes stored events under new message ids, duplicated and out of
  order, as a confused producer or a replayed backup would: the stream's
  deduplication does not catch them, so the services' handlers must.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common import jetstream, notices

T = TypeVar("T")

# The message id prefix of the copies the suite publishes.
REPLAY_PREFIX = "fault-replay-"


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    subject: str
    data: bytes
    event: events_pb2.JobEvent
    msg_id: str

    @property
    def replayed(self) -> bool:
        """Whether the suite published this copy (see `EventWatch.replay`)."""
        return self.msg_id.startswith(REPLAY_PREFIX)

    @property
    def kind(self) -> str:
        return self.event.WhichOneof("kind") or ""


@dataclass
class Seen:
    """What the suite saw live of one job, with time.time() stamps."""

    events: list[tuple[float, str]] = field(default_factory=list)
    progress: list[tuple[float, str, int]] = field(default_factory=list)

    def started_at(self) -> float | None:
        return next((at for at, kind in self.events if kind == "started"), None)

    def ended(self) -> bool:
        return any(kind in jetstream.TERMINAL_KINDS for _, kind in self.events)

    def last_progress_at(self) -> float | None:
        return self.progress[-1][0] if self.progress else None


_STAGES = {
    jobs_pb2.JOB_STAGE_QUEUED: "queued",
    jobs_pb2.JOB_STAGE_DOWNLOADING: "downloading",
    jobs_pb2.JOB_STAGE_RENDERING: "rendering",
    jobs_pb2.JOB_STAGE_FINISHING: "finishing",
}


class EventWatch:
    def __init__(self, nats_url: str) -> None:
        self.url = nats_url
        self.seen: dict[str, Seen] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._nc: Client | None = None
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.run(self._connect(), timeout_s=15)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def snapshot(self, job_id: str) -> Seen:
        with self._lock:
            seen = self.seen.get(job_id, Seen())
            return Seen(list(seen.events), list(seen.progress))

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            self.url,
            name="fault-suite",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            # The suite kills NATS on purpose: a refused reconnect is expected, not news.
            error_cb=_ignore,
        )
        await self._nc.subscribe(f"{jetstream.EVENTS_SUBJECT_PREFIX}.>", cb=self._on_event)
        await self._nc.subscribe(f"{notices.PROGRESS}.*", cb=self._on_progress)

    async def _on_event(self, msg: Msg) -> None:
        event = events_pb2.JobEvent.FromString(msg.data)
        with self._lock:
            self.seen.setdefault(event.job_id, Seen()).events.append(
                (time.time(), event.WhichOneof("kind") or "")
            )

    async def _on_progress(self, msg: Msg) -> None:
        notice = events_pb2.JobProgressNotice.FromString(msg.data)
        with self._lock:
            self.seen.setdefault(notice.job_id, Seen()).progress.append(
                (time.time(), _STAGES.get(notice.stage, "?"), notice.percent)
            )

    def stored_events(self) -> list[StoredEvent]:
        """Every message of LIPSYNC_EVENTS, oldest first."""
        return self.run(self._stored_events(), timeout_s=120)

    async def _stored_events(self) -> list[StoredEvent]:
        assert self._nc is not None
        js = self._nc.jetstream()
        info = await js.stream_info(jetstream.EVENTS_STREAM)
        stored: list[StoredEvent] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(jetstream.EVENTS_STREAM, seq)
            except NotFoundError:
                continue
            data = msg.data or b""
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            stored.append(
                StoredEvent(int(msg.seq or seq), msg.subject or "", data, _parse(data), msg_id)
            )
        return stored

    def replay(self, events: list[StoredEvent], rng: random.Random) -> int:
        """Publish `events` again, each once or twice, shuffled; returns how many were sent."""
        batch = [event for event in events for _ in range(rng.choice((1, 2)))]
        rng.shuffle(batch)
        return self.run(self._replay(batch), timeout_s=120)

    async def _replay(self, batch: list[StoredEvent]) -> int:
        assert self._nc is not None
        js = self._nc.jetstream()
        for event in batch:
            await js.publish(
                event.subject,
                event.data,
                headers={"Nats-Msg-Id": f"{REPLAY_PREFIX}{uuid.uuid4()}"},
                timeout=10,
            )
        return len(batch)

    def close(self) -> None:
        if self._nc is not None:
            try:
                self.run(self._nc.close(), timeout_s=10)
            except Exception:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)


async def _ignore(error: Exception) -> None:
    pass


def _parse(data: bytes) -> events_pb2.JobEvent:
    return events_pb2.JobEvent.FromString(data)


def by_job(events: list[StoredEvent]) -> dict[str, list[StoredEvent]]:
    grouped: dict[str, list[StoredEvent]] = {}
    for event in events:
        grouped.setdefault(event.event.job_id, []).append(event)
    return grouped
