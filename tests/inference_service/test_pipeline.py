"""The pipeline per model, over a real local HTTP server (billing and engine faked when needed)."""

from __future__ import annotations

import asyncio
import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.failures import JobFailure
from inference_service.pipeline import Pipeline
from inference_service.settings import Limits, WorkerSettings
from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.results import ResultStore
from tests.job_specs import image_spec, multi_spec, video_spec
from tests.media_fixtures import portrait_path, write_garbage, write_mp4, write_speech_wav


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _pipeline(
    tmp_path: Path,
    http: httpx.AsyncClient,
    *,
    engine: object | None = None,
    billing: object | None = None,
    render_slots: int = 1,
    **limits: Any,
) -> Pipeline:
    """A pipeline, by default without billing: a job that reaches a reservation crashes."""
    settings = WorkerSettings(
        nats_url="nats://unused",
        billing_addr="unused:0",
        results_dir=tmp_path / "results",
        work_dir=tmp_path / "work",
        allow_private_urls=True,
        engine="builtin",
        torchscript_model="",
        torch_batch=32,
        worker_name="test",
        heartbeat_s=15.0,
        concurrency=2,
        render_slots=render_slots,
        limits=replace(
            Limits(
                max_image_bytes=1 << 20,
                max_audio_bytes=1 << 20,
                max_video_bytes=1 << 20,
                max_image_side=8000,
                max_duration_s=600.0,
                download_timeout_s=10.0,
                max_video_side=4096,
                max_video_fps=60.0,
            ),
            **limits,
        ),
    )
    return Pipeline(
        settings,
        engine or LipsyncEngine(),  # type: ignore[arg-type]
        billing,  # type: ignore[arg-type]
        http,
        ResultStore(tmp_path / "results"),
    )


async def test_durations_of_a_conversation_are_left_then_right(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    folder, base = served
    write_speech_wav(folder / "l.wav", 1.5)
    write_speech_wav(folder / "r.wav", 0.5)
    spec = multi_spec(
        image=f"{base}/missing.png", left_audio=f"{base}/l.wav", right_audio=f"{base}/r.wav"
    )
    async with httpx.AsyncClient() as http:
        pipeline = _pipeline(tmp_path, http)
        durations = await pipeline.probe_durations(spec)
    assert durations == pytest.approx([1.5, 0.5], abs=0.01)
    assert not any((tmp_path / "work").iterdir())  # nothing left behind


async def test_a_video_job_is_priced_by_its_audio(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    write_speech_wav(folder / "a.wav", 2.0)
    spec = video_spec(video=f"{base}/never-fetched.mp4", audio=f"{base}/a.wav")
    async with httpx.AsyncClient() as http:
        durations = await _pipeline(tmp_path, http).probe_durations(spec)
    assert durations == pytest.approx([2.0], abs=0.01)


async def test_undecodable_audio_is_a_user_failure(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    folder, base = served
    write_garbage(folder / "a.mp3")
    spec = image_spec(image=f"{base}/x.png", audio=f"{base}/a.mp3")
    async with httpx.AsyncClient() as http:
        with pytest.raises(JobFailure, match="audio could not be decoded"):
            await _pipeline(tmp_path, http).probe_durations(spec)


async def test_a_spec_without_a_model_is_a_user_failure(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(JobFailure, match="unknown model"):
            await _pipeline(tmp_path, http).probe_durations(jobs_pb2.JobSpec())


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_video_side": 100}, "video is 160x120 pixels, over the limit of 100x100"),
        ({"max_video_fps": 20}, "video is 25 frames per second, over the limit of 20"),
    ],
)
async def test_a_video_over_a_limit_fails_before_anything_is_reserved(
    served: tuple[Path, str], tmp_path: Path, limits: dict[str, Any], message: str
) -> None:
    folder, base = served
    write_mp4(folder / "v.mp4", 0.4, width=160, height=120, with_audio=False)
    write_speech_wav(folder / "a.wav", 0.4)
    request = events_pb2.JobRequested(
        job_id="job-1", account_id="acct", spec=video_spec(f"{base}/v.mp4", f"{base}/a.wav")
    )
    async with httpx.AsyncClient() as http:
        # Billing is None here: reaching Reserve would crash, not fail for the user.
        with pytest.raises(JobFailure) as caught:
            await _pipeline(tmp_path, http, **limits).run(request)
    assert str(caught.value) == message


class CountingEngine:
    """Renders nothing, slowly, and records how many renders ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def render_image(self, image: str, audio: str, out: str, **_: object) -> RenderResult:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.3)
        Path(out).write_bytes(b"mp4")
        with self._lock:
            self.running -= 1
        return RenderResult(duration_s=0.4, frames=10, seed=1, width=8, height=8)


class Billing:
    async def Reserve(
        self, request: billing_pb2.ReserveRequest, **_: object
    ) -> billing_pb2.ReserveResponse:
        return billing_pb2.ReserveResponse(outcome=billing_pb2.RESERVE_OUTCOME_RESERVED)


@pytest.mark.parametrize("slots", [1, 2])
async def test_renders_are_bounded_by_the_render_slots(
    served: tuple[Path, str], tmp_path: Path, slots: int
) -> None:
    folder, base = served
    shutil.copy(portrait_path(), folder / "face.jpg")
    write_speech_wav(folder / "a.wav", 0.4)
    engine = CountingEngine()
    async with httpx.AsyncClient() as http:
        pipeline = _pipeline(tmp_path, http, engine=engine, billing=Billing(), render_slots=slots)
        await asyncio.gather(
            *(
                pipeline.run(
                    events_pb2.JobRequested(
                        job_id=f"job-{i}", spec=image_spec(f"{base}/face.jpg", f"{base}/a.wav")
                    )
                )
                for i in range(3)
            )
        )
    assert engine.most == slots
