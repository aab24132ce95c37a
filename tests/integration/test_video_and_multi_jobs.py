"""lipsync-video and lipsync-image-multi through REST: real renders, exact bills."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from inference_service.media.probe import probe_output
from tests.integration.conftest import Platform
from tests.integration.harness import wait_until_finished
from tests.integration.test_image_job import submit

pytestmark = pytest.mark.integration


def download(job: dict, tmp_path: Path) -> Path:
    response = httpx.get(job["output"], timeout=30)
    assert response.status_code == 200
    out = tmp_path / "out.mp4"
    out.write_bytes(response.content)
    return out


def test_video_job_is_extended_to_the_audio_and_billed_on_it(
    platform: Platform, tmp_path: Path
) -> None:
    # A 2 s clip under 6 s of audio: the output plays the clip back and forth for 6 s.
    account_id, key = platform.account(credits=100)
    job_id = submit(
        platform,
        key,
        {
            "formState": {
                "video": f"{platform.media.url}/talking.mp4",
                "audio": f"{platform.media.url}/speech-6s.wav",
                "resolution": "720p",
                "seed": 3,
            }
        },
        endpoint="lipsync-video",
    )
    job = wait_until_finished(platform.client, job_id, key, timeout_s=180)
    assert job["status"] == "completed", job["error"]
    assert job["model"] == "lipsync-video"
    assert job["credits"] == 6 * 4
    info = probe_output(download(job, tmp_path))
    assert abs(info.duration_s - 6.0) < 0.1
    assert info.height == 720
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert platform.balance(account_id) == 100 - 24


@pytest.mark.parametrize(("order", "seconds"), [("left_right", 3.2 + 6.0), ("meanwhile", 6.0)])
def test_multi_job_lasts_by_its_order_and_is_billed_on_it(
    platform: Platform, tmp_path: Path, order: str, seconds: float
) -> None:
    account_id, key = platform.account(credits=100)
    job_id = submit(
        platform,
        key,
        {
            "formState": {
                "image": f"{platform.media.url}/two-faces.jpg",
                "left_audio": f"{platform.media.url}/speech-3s.wav",
                "right_audio": f"{platform.media.url}/speech-6s.wav",
                "order": order,
            }
        },
        endpoint="lipsync-image-multi",
    )
    job = wait_until_finished(platform.client, job_id, key, timeout_s=180)
    assert job["status"] == "completed", job["error"]
    price = max(5, math.ceil(seconds)) * 2
    assert job["credits"] == price
    info = probe_output(download(job, tmp_path))
    assert abs(info.duration_s - seconds) < 0.1
    assert info.height == 480
    assert platform.balance(account_id) == 100 - price


def test_multi_job_with_one_face_fails_saying_how_many_and_charges_nothing(
    platform: Platform,
) -> None:
    account_id, key = platform.account(credits=50)
    job_id = submit(
        platform,
        key,
        {
            "formState": {
                "image": f"{platform.media.url}/portrait.jpg",
                "left_audio": f"{platform.media.url}/speech-3s.wav",
                "right_audio": f"{platform.media.url}/speech-3s.wav",
            }
        },
        endpoint="lipsync-image-multi",
    )
    job = wait_until_finished(platform.client, job_id, key, timeout_s=60)
    assert job["status"] == "failed"
    assert "found 1 face" in job["error"]
    assert job["credits"] == 0
    assert platform.settled_balance(account_id, expected=50) == 50
