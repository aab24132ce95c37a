"""Cancel and progress on a real worker: real NATS, real downloads, a real 480p render.

job_service's side is played by hand: a cancel is a `canceled` event in the
job's events subject, then (unless the test loses it) a cancel notice.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from inference_service.engine import LipsyncEngine
from inference_service.pipeline import Pipeline
from inference_service.settings import Limits, WorkerSettings
from inference_service.worker import Worker
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common import notices
from lipsync_common.jetstream import connect, ensure_streams, publish_event
from lipsync_common.results import ResultStore
from tests.inference_service.test_worker import (
    Billing,
    kinds,
    published_events,
    queue_drained,
    queue_job,
)
from tests.inference_service.trickle import TrickleOrigin
from tests.job_specs import image_spec
from tests.media_fixtures import portrait_path, write_speech_wav

MB = 1 << 20
# Long enough that a cancel heard at the first frames lands well before the end.
LONG_AUDIO_S = 60.0
# Long enough for several progress notices while rendering.
PROGRESS_AUDIO_S = 30.0
CANCEL_DEADLINE_S = 5.0
STAGES = [
    jobs_pb2.JOB_STAGE_DOWNLOADING,
    jobs_pb2.JOB_STAGE_RENDERING,
    jobs_pb2.JOB_STAGE_FINISHING,
]


@pytest.fixture
async def conn(nats_server: str) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc, js = await connect(nats_server, "test")
    await ensure_streams(js)
    yield nc, js
    await nc.close()


@dataclass
class Received:
    """The progress notices heard, with the monotonic time each arrived."""

    notices: list[tuple[float, events_pb2.JobProgressNotice]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, msg: Msg) -> None:
        self.notices.append((time.monotonic(), events_pb2.JobProgressNotice.FromString(msg.data)))
        self.changed.set()

    async def wait_for(
        self, wanted: Callable[[events_pb2.JobProgressNotice], bool], timeout_s: float = 30
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not any(wanted(notice) for _, notice in self.notices):
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Setup:
    nc: Client
    js: JetStreamContext
    worker: Worker
    origin: str
    results: Path
    work: Path
    heard: Received
    billing: Billing


@pytest.fixture
async def setup(
    conn: tuple[Client, JetStreamContext], engine: LipsyncEngine, tmp_path: Path
) -> AsyncIterator[Setup]:
    nc, js = conn
    settings = WorkerSettings(
        nats_url="nats://unused",
        billing_addr="unused:0",
        results_dir=tmp_path / "results",
        work_dir=tmp_path / "work",
        allow_private_urls=True,
        engine="builtin",
        torchscript_model="",
        torch_batch=32,
        worker_name="w1",
        heartbeat_s=0.5,
        concurrency=2,
        render_slots=1,
        limits=Limits(
            max_image_bytes=20 * MB,
            max_audio_bytes=50 * MB,
            max_video_bytes=50 * MB,
            max_image_side=8000,
            max_duration_s=600.0,
            download_timeout_s=60.0,
            max_video_side=4096,
            max_video_fps=60.0,
        ),
    )
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(portrait_path(), www / "face.jpg")
    write_speech_wav(www / "long.wav", LONG_AUDIO_S)
    write_speech_wav(www / "progress.wav", PROGRESS_AUDIO_S)
    heard = Received()
    sub = await nc.subscribe(f"{notices.PROGRESS}.*", cb=heard.handle)
    billing = Billing()
    with TrickleOrigin(www) as origin:
        async with httpx.AsyncClient(timeout=30) as http:
            store = ResultStore(settings.results_dir)
            pipeline = Pipeline(settings, engine, billing, http, store)  # type: ignore[arg-type]
            worker = Worker(
                nc,
                js,
                pipeline,
                "w1",
                heartbeat_s=settings.heartbeat_s,
                concurrency=settings.concurrency,
            )
            await worker.start()
            try:
                yield Setup(
                    nc,
                    js,
                    worker,
                    origin.url,
                    settings.results_dir,
                    settings.work_dir,
                    heard,
                    billing,
                )
            finally:
                await worker.stop()
                await sub.unsubscribe()


async def cancel(s: Setup, job_id: str, *, notice: bool) -> None:
    """What job_service's CancelJob does: store `canceled`, then tell every worker."""
    event = events_pb2.JobEvent(
        job_id=job_id, account_id="acct", canceled=events_pb2.JobCanceled(by="api")
    )
    await publish_event(s.js, event)
    if notice:
        await notices.publish(s.nc, notices.CANCEL, job_id)


def rendering(notice: events_pb2.JobProgressNotice) -> bool:
    return notice.stage == jobs_pb2.JOB_STAGE_RENDERING and notice.frames_done > 0


async def stop_time(s: Setup, job_id: str, notice: bool) -> float:
    """Cancel the job, and return the seconds until the worker acked it."""
    started = time.monotonic()
    await cancel(s, job_id, notice=notice)
    await queue_drained(s.js)
    elapsed = time.monotonic() - started
    print(f"cancel to stop ({'notice' if notice else 'notice lost'}): {elapsed * 1000:.0f} ms")
    return elapsed


def nothing_left(s: Setup) -> bool:
    return not any(s.results.iterdir()) and not any(s.work.iterdir())


@pytest.mark.parametrize("notice", [True, False], ids=["notice", "notice-lost"])
async def test_a_canceled_render_stops_within_five_seconds_and_stores_nothing(
    setup: Setup, notice: bool
) -> None:
    s = setup
    await queue_job(s.js, "job-1", image_spec(f"{s.origin}/face.jpg", f"{s.origin}/long.wav"))
    await s.heard.wait_for(rendering)

    assert await stop_time(s, "job-1", notice) < CANCEL_DEADLINE_S
    assert kinds(await published_events(s.js, "job-1")) == ["started", "canceled"]
    assert nothing_left(s)  # the partial output and the inputs are gone
    last = s.heard.notices[-1][1]
    assert last.frames_done < last.frames_total  # stopped mid-render, not at its end
    # And the worker keeps working: the next job runs to the end.
    await queue_job(s.js, "job-2", image_spec(f"{s.origin}/face.jpg", f"{s.origin}/progress.wav"))
    await queue_drained(s.js)
    assert kinds(await published_events(s.js, "job-2")) == ["started", "completed"]


async def test_a_cancel_during_a_download_stops_it(setup: Setup) -> None:
    s = setup
    # The audio trickles a byte every 0.1 s: only the cancel ends this download in time.
    await queue_job(s.js, "job-1", image_spec(f"{s.origin}/face.jpg", f"{s.origin}/slow/a.wav"))
    await s.heard.wait_for(lambda n: n.stage == jobs_pb2.JOB_STAGE_DOWNLOADING)
    await asyncio.sleep(0.3)

    assert await stop_time(s, "job-1", notice=True) < CANCEL_DEADLINE_S
    assert kinds(await published_events(s.js, "job-1")) == ["started", "canceled"]
    assert s.billing.reserved == []  # never reached billing
    assert nothing_left(s)


async def test_a_cancel_while_waiting_for_a_render_slot_stops_the_wait(setup: Setup) -> None:
    s = setup
    # One render slot: the second job waits for the first, QUEUED.
    await queue_job(s.js, "job-1", image_spec(f"{s.origin}/face.jpg", f"{s.origin}/long.wav"))
    await s.heard.wait_for(rendering)
    await queue_job(s.js, "job-2", image_spec(f"{s.origin}/face.jpg", f"{s.origin}/long.wav"))
    await s.heard.wait_for(lambda n: n.job_id == "job-2" and n.stage == jobs_pb2.JOB_STAGE_QUEUED)

    started = time.monotonic()
    await cancel(s, "job-2", notice=True)
    async with asyncio.timeout(CANCEL_DEADLINE_S):
        while s.worker.in_flight > 1:  # noqa: ASYNC110 (the worker offers no event)
            await asyncio.sleep(0.02)
    assert time.monotonic() - started < CANCEL_DEADLINE_S
    await cancel(s, "job-1", notice=True)
    await queue_drained(s.js)
    assert kinds(await published_events(s.js, "job-2")) == ["started", "canceled"]


async def test_progress_is_reported_during_a_render(setup: Setup) -> None:
    s = setup
    await queue_job(s.js, "job-1", image_spec(f"{s.origin}/face.jpg", f"{s.origin}/progress.wav"))
    await queue_drained(s.js)
    assert kinds(await published_events(s.js, "job-1")) == ["started", "completed"]

    heard = [(at, n) for at, n in s.heard.notices if n.job_id == "job-1"]
    assert all(n.attempt == 1 for _, n in heard)
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(heard)]
    print(f"progress notices: {len(gaps) + 1}, largest gap {max(gaps):.3f} s")
    assert max(gaps) <= 1.2, gaps
    percents = [n.percent for _, n in heard]
    assert percents == sorted(percents), percents
    assert 0 <= percents[0] and percents[-1] == 99
    stages = [n.stage for _, n in heard]
    assert [stage for i, stage in enumerate(stages) if i == 0 or stage != stages[i - 1]] == STAGES

    renders = [(at, n) for at, n in heard if rendering(n)]
    assert {n.frames_total for _, n in renders} == {round(PROGRESS_AUDIO_S * 25)}
    # The ETA is known from ~0.5 s of measured frames on; allow a notice's interval more.
    under_way = [n for at, n in renders if at - renders[0][0] >= 1.3]
    assert under_way, "the render was too short to show an ETA"
    assert all(n.HasField("eta_seconds") for n in under_way)
    assert all(0 <= n.eta_seconds <= 60 for n in under_way)
