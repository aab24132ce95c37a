"""Every SDK call end to end against the real stack: create, wait, download, list, control, bill.

Real media from the media host (URLs); the local-file path through uploads
is tests/sdk/test_uploads.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest
from lipsync_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConfigurationError,
    ConflictError,
    DownloadError,
    InsufficientCreditsError,
    Job,
    NotFoundError,
    ValidationError,
    WaitTimeoutError,
)
from lipsync_client.mp4 import duration_seconds

from inference_service.media.probe import probe_output
from tests.sdk.conftest import SdkStack

pytestmark = pytest.mark.integration

STAGES = {"queued", "downloading", "rendering", "finishing"}


def test_image_job_waits_with_progress_downloads_and_is_billed(
    sdk_stack: SdkStack, tmp_path: Path
) -> None:
    account = sdk_stack.account(credits=100)
    seen: list[Job] = []
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        job = client.lipsync_image(
            sdk_stack.url("portrait.jpg"),
            sdk_stack.url("speech-8s.wav"),
            resolution="720p",
            seed=7,
        )
        assert job.status == "processing" and job.model == "lipsync-image"
        percents: list[int] = []

        def record(current: Job) -> None:
            seen.append(current)
            if current.progress is not None:
                assert current.progress.stage in STAGES
                percents.append(current.progress.percent)

        assert job.wait(timeout=180, on_progress=record) is job
        assert job.status == "completed", job.error
        assert percents == sorted(percents), "progress went down"
        assert seen[-1].done and job.progress is None
        assert job.error == "" and job.seed == 7
        assert job.credits == 8 * 4
        assert job.execution_time is not None and job.execution_time > 0
        assert job.timings is not None and "inference" in job.timings

        out = job.download(tmp_path / "nested" / "out.mp4")
        assert out == tmp_path / "nested" / "out.mp4"
        assert list(out.parent.iterdir()) == [out], "a part file was left behind"
        info = probe_output(out)
        assert (info.video_codec, info.audio_codec, info.height) == ("h264", "aac", 720)
        duration = duration_seconds(out)
        assert duration is not None and abs(duration - 8.0) < 0.1

        assert client.jobs.get(job.id).output == job.output
        assert client.balance().api_credits == 100 - 32
        kinds = [e.kind for e in client.usage() if e.job_id == job.id]
        assert "capture" in kinds and "reserve" in kinds
        assert [e.kind for e in client.usage(limit=1)] == [kinds[0]]

        # Delete: the output goes, the job stays readable.
        old_output = job.output
        job.delete()
        again = client.jobs.get(job.id)
        assert again.output is None and again.deleted_at is not None
        assert httpx.get(old_output, timeout=10).status_code == 404
        with pytest.raises(DownloadError):
            again.download(tmp_path / "gone.mp4")
        assert not (tmp_path / "gone.mp4").exists()


def test_list_filters_and_pages(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=100)
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        made = [
            client.lipsync_image(sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav"))
            for _ in range(3)
        ]
        failed = client.lipsync_image(sdk_stack.url("no-face.png"), sdk_stack.url("speech-3s.wav"))
        for job in [*made, failed]:
            job.wait(timeout=120)
        assert failed.status == "failed" and "face" in failed.error and failed.credits == 0

        # Pages of one, all walked: newest first.
        ids = [job.id for job in client.jobs.list(page_size=1)]
        assert ids == [failed.id, *reversed([job.id for job in made])]
        assert [j.id for j in client.jobs.list(status="failed")] == [failed.id]
        assert len(list(client.jobs.list(limit=2, page_size=1))) == 2
        assert list(client.jobs.list(model="lipsync-video")) == []
        with pytest.raises(ValidationError):
            list(client.jobs.list(status="exploded"))


def test_cancel_wait_and_job_control_errors(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=100)
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        job = client.lipsync_video(
            sdk_stack.url("talking.mp4"), sdk_stack.url("speech-8s.wav"), resolution="720p"
        )
        with pytest.raises(ConflictError) as processing:
            job.delete()
        assert processing.value.code == "job_processing"
        job.cancel()
        job.wait(timeout=30)
        assert job.status == "canceled" and job.credits == 0
        with pytest.raises(ConflictError) as finished:
            client.jobs.cancel(job.id)
        assert finished.value.code == "job_finished" and finished.value.status == 409
        client.jobs.delete(job.id)

        with pytest.raises(NotFoundError):
            client.jobs.get("00000000-0000-0000-0000-000000000000")
        # A job of another account is not found either.
        other = sdk_stack.account(credits=0)
        with Client(api_key=other.key, base_url=sdk_stack.base_url) as stranger:
            with pytest.raises(NotFoundError):
                stranger.jobs.get(job.id)


def test_wait_timeout_and_prefer_wait_on_create(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=100)
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        slow = client.lipsync_image(
            sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-8s.wav"), resolution="720p"
        )
        with pytest.raises(WaitTimeoutError):
            slow.wait(timeout=0.01)
        # Held in the create call until the job ends: answered completed, no polling.
        quick = client.lipsync_image(
            sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav"), wait=60
        )
        assert quick.status == "completed", quick.error
        assert quick.output and quick.credits == 10
        with contextlib.suppress(ConflictError):  # it may have ended meanwhile
            slow.cancel()


def test_the_same_idempotency_key_is_the_same_job(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=100)
    args = (sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav"))
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        first = client.lipsync_image(*args, idempotency_key="order-42")
        second = client.lipsync_image(*args, idempotency_key="order-42")
        assert first.id == second.id
        with pytest.raises(ConflictError):
            client.lipsync_image(*args, seed=3, idempotency_key="order-42")
        first.wait(timeout=120)


def test_estimate_multi_and_errors_of_the_api(sdk_stack: SdkStack) -> None:
    account = sdk_stack.account(credits=100)
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        estimate = client.estimate(
            "lipsync-image-multi",
            image=sdk_stack.url("two-faces.jpg"),
            left_audio=sdk_stack.url("speech-3s.wav"),
            right_audio=sdk_stack.url("speech-3s.wav"),
            order="left_right",
        )
        # 3.2 s + 3.2 s: 7 billed seconds at 480p.
        assert (estimate.billed_seconds, estimate.credits) == (7, 14)
        job = client.lipsync_image_multi(
            sdk_stack.url("two-faces.jpg"),
            sdk_stack.url("speech-3s.wav"),
            sdk_stack.url("speech-3s.wav"),
            order="meanwhile",
        ).wait(timeout=120)
        assert job.status == "completed", job.error
        assert job.model == "lipsync-image-multi" and job.credits == 10

        with pytest.raises(ValidationError) as invalid:
            client.lipsync_image(
                sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav"), resolution="1080p"
            )
        assert invalid.value.status == 422
        assert [e.field for e in invalid.value.errors] == ["formState.resolution"]

    poor = sdk_stack.account(credits=0)
    with Client(api_key=poor.key, base_url=sdk_stack.base_url) as client:
        with pytest.raises(InsufficientCreditsError) as broke:
            client.lipsync_image(sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav"))
        assert broke.value.status == 402
    with Client(api_key="sk_unknownkey_" + "x" * 40, base_url=sdk_stack.base_url) as client:
        with pytest.raises(AuthenticationError):
            client.balance()


def test_configuration_from_the_environment(
    sdk_stack: SdkStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = sdk_stack.account(credits=3)
    monkeypatch.delenv("LIPSYNC_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="LIPSYNC_API_KEY"):
        Client()
    monkeypatch.setenv("LIPSYNC_API_KEY", account.key)
    monkeypatch.delenv("LIPSYNC_BASE_URL", raising=False)
    assert Client().base_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("LIPSYNC_BASE_URL", sdk_stack.base_url + "/")
    with Client() as client:
        assert client.base_url == sdk_stack.base_url
        assert client.balance().api_credits == 3


async def test_async_client_end_to_end(sdk_stack: SdkStack, tmp_path: Path) -> None:
    account = sdk_stack.account(credits=100)
    async with AsyncClient(api_key=account.key, base_url=sdk_stack.base_url) as client:
        updates: list[str] = []

        async def record(job: object) -> None:
            updates.append(getattr(job, "status", ""))

        job = await client.lipsync_video(
            sdk_stack.url("talking.mp4"), sdk_stack.url("speech-3s.wav"), seed=1
        )
        await job.wait(timeout=120, on_progress=record)
        assert job.status == "completed", job.error
        assert updates[-1] == "completed"
        out = await job.download(tmp_path / "video.mp4")
        assert out.stat().st_size > 0
        duration = duration_seconds(out)
        assert duration is not None and abs(duration - 3.2) < 0.1

        assert [j.id async for j in client.jobs.list()] == [job.id]
        assert (await client.jobs.get(job.id)).credits == 10
        estimate = await client.estimate(
            "lipsync-video",
            video=sdk_stack.url("talking.mp4"),
            audio=sdk_stack.url("speech-3s.wav"),
        )
        assert estimate.credits == 10
        assert (await client.balance()).api_credits == 90
        assert [e.kind async for e in client.usage(limit=1)] == ["capture"]

        other = await client.lipsync_image(
            sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-8s.wav")
        )
        await client.jobs.cancel(other.id)
        assert (await client.jobs.wait(other.id, timeout=30)).status == "canceled"
        await client.jobs.delete(other.id)
        with pytest.raises(NotFoundError):
            await client.jobs.get("00000000-0000-0000-0000-000000000000")
