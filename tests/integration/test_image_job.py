"""A real lipsync-image job through REST, from submit to download, and its bill."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from inference_service.media.probe import probe_output
from tests.integration.conftest import Platform
from tests.integration.harness import bearer, wait_until_finished

pytestmark = pytest.mark.integration


def submit(platform: Platform, key: str, body: dict, endpoint: str = "lipsync-image") -> str:
    response = platform.client.post(f"/api/v1/{endpoint}", json=body, headers=bearer(key))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "processing"
    return str(response.json()["id"])


@pytest.mark.parametrize(
    ("resolution", "audio", "price"),
    [("480p", "speech-3s.wav", 5 * 2), ("720p", "speech-6s.wav", 6 * 4)],
)
def test_image_job_completes_renders_and_charges_once(
    platform: Platform, tmp_path: Path, resolution: str, audio: str, price: int
) -> None:
    account_id, key = platform.account(credits=100)
    job_id = submit(
        platform,
        key,
        {
            "webhook": f"{platform.media.url}/webhook",
            "formState": {
                "image": f"{platform.media.url}/portrait.jpg",
                "audio": f"{platform.media.url}/{audio}",
                "resolution": resolution,
                "seed": 7,
            },
        },
    )

    job = wait_until_finished(platform.client, job_id, key, timeout_s=120)
    assert job["status"] == "completed", job["error"]
    assert job["error"] == ""
    assert job["model"] == "lipsync-image"
    assert isinstance(job["executionTime"], int) and job["executionTime"] > 0
    assert {"download", "inference"} <= set(job["timings"])
    assert job["credits"] == price

    # The output URL works without the API key.
    video = httpx.get(job["output"], timeout=30)
    assert video.status_code == 200
    out = tmp_path / "out.mp4"
    out.write_bytes(video.content)
    info = probe_output(out)
    expected_s = 3.2 if audio == "speech-3s.wav" else 6.0
    assert abs(info.duration_s - expected_s) < 0.1
    assert info.height == int(resolution.removesuffix("p"))
    assert info.width % 2 == 0
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")

    assert platform.balance(account_id) == 100 - price
    _, payload = platform.media.wait_for_webhook(job_id, timeout_s=30)
    assert payload["status"] == "completed"
    assert payload["output"] == job["output"]


def test_tampered_output_url_is_refused(platform: Platform) -> None:
    _, key = platform.account(credits=20)
    job_id = submit(
        platform,
        key,
        {
            "formState": {
                "image": f"{platform.media.url}/portrait.jpg",
                "audio": f"{platform.media.url}/speech-3s.wav",
            }
        },
    )
    job = wait_until_finished(platform.client, job_id, key, timeout_s=120)
    assert job["status"] == "completed", job["error"]
    tampered = job["output"].replace("sig=", "sig=x")
    assert httpx.get(tampered, timeout=10).status_code == 404
