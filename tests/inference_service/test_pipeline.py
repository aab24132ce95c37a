"""The pipeline's input handling per model, over a real local HTTP server (no billing needed)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inference_service.engine import LipsyncEngine
from inference_service.failures import JobFailure
from inference_service.pipeline import Pipeline
from inference_service.settings import Limits, WorkerSettings
from inference_service.storage import ResultStore
from lipsync.jobs.v1 import jobs_pb2
from tests.job_specs import image_spec, multi_spec, video_spec
from tests.media_fixtures import write_garbage, write_speech_wav


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


def _pipeline(tmp_path: Path, http: httpx.AsyncClient) -> Pipeline:
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
        limits=Limits(
            max_image_bytes=1 << 20,
            max_audio_bytes=1 << 20,
            max_video_bytes=1 << 20,
            max_image_side=8000,
            max_duration_s=600.0,
            download_timeout_s=10.0,
        ),
    )
    return Pipeline(settings, LipsyncEngine(), None, http, ResultStore(tmp_path / "results"))  # type: ignore[arg-type]


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
