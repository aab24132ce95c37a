"""Job control through REST on the real stack: progress, cancel mid-render, wait, delete, list."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Platform
from tests.integration.harness import bearer, wait_until_finished
from tests.media_fixtures import write_speech_wav

pytestmark = pytest.mark.integration

LONG_AUDIO_S = 40.0


@pytest.fixture(scope="module")
def long_audio(platform: Platform) -> str:
    """A recording long enough that its 720p render takes several seconds."""
    write_speech_wav(platform.media.root / "speech-40s.wav", LONG_AUDIO_S)
    return f"{platform.media.url}/speech-40s.wav"


def image_body(platform: Platform, audio: str, resolution: str = "480p", **extra: object) -> dict:
    return {
        **extra,
        "formState": {
            "image": f"{platform.media.url}/portrait.jpg",
            "audio": audio,
            "resolution": resolution,
        },
    }


def test_a_rendering_job_reports_progress_and_stops_on_cancel(
    platform: Platform, long_audio: str
) -> None:
    account_id, key = platform.account(credits=1000)
    created = platform.client.post(
        "/api/v1/lipsync-image",
        json=image_body(platform, long_audio, "720p", webhook=f"{platform.media.url}/webhook"),
        headers=bearer(key),
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    # Progress while it renders: stages in order, percent never down, an ETA.
    stages, percents = [], []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = platform.client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key)).json()
        assert job["status"] == "processing", job
        progress = job["progress"]
        stages.append(progress["stage"])
        percents.append(progress["percent"])
        if progress["stage"] == "rendering" and progress["etaSeconds"] is not None:
            break
        time.sleep(0.1)
    assert stages[-1] == "rendering", stages
    assert percents == sorted(percents) and 10 <= percents[-1] < 95
    order = ["queued", "downloading", "rendering"]
    seen = [stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage]
    assert all(stage in order for stage in seen)

    asked = time.monotonic()
    canceled = platform.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(key))
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert (body["status"], body["credits"], body["progress"]) == ("canceled", 0, None)
    assert time.monotonic() - asked < 5

    # Nothing charged, the reservation given back, the webhook told.
    assert platform.settled_balance(account_id, 1000) == 1000
    _, payload = platform.media.wait_for_webhook(job_id, timeout_s=30)
    assert payload["status"] == "canceled" and payload["credits"] == 0
    # The worker stopped: no output ever appears, and the job stays canceled.
    time.sleep(3)
    results = Path(platform.env["LIPSYNC_DATA_DIR"]) / "results"
    assert not (results / f"{job_id}.mp4").exists()
    job = platform.client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key)).json()
    assert (job["status"], job["output"]) == ("canceled", None)

    again = platform.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(key))
    assert (again.status_code, again.json()["code"]) == (409, "job_finished")
    deliveries = platform.client.get(
        f"/api/v1/jobs/{job_id}/webhook-deliveries", headers=bearer(key)
    ).json()
    assert deliveries["delivered"] is True
    assert 200 <= deliveries["data"][-1]["statusCode"] < 300


def test_wait_answers_the_finished_job_and_delete_removes_its_output(
    platform: Platform,
) -> None:
    _, key = platform.account(credits=100)
    created = platform.client.post(
        "/api/v1/lipsync-image",
        json=image_body(platform, f"{platform.media.url}/speech-3s.wav"),
        headers={**bearer(key), "Prefer": "wait=60"},
        timeout=70,
    )
    assert created.status_code == 200, created.text
    assert created.headers["preference-applied"] == "wait=60"
    job = created.json()
    assert job["status"] == "completed" and job["credits"] == 10
    assert httpx.get(job["output"], timeout=30).status_code == 200

    deleted = platform.client.delete(f"/api/v1/jobs/{job['id']}", headers=bearer(key))
    assert deleted.status_code == 204
    assert httpx.get(job["output"], timeout=30).status_code == 404
    read = platform.client.get(f"/api/v1/jobs/{job['id']}", headers=bearer(key)).json()
    assert read["output"] is None and read["deletedAt"] and read["status"] == "completed"


def test_a_job_in_processing_cannot_be_deleted_and_lists_newest_first(
    platform: Platform, long_audio: str
) -> None:
    _, key = platform.account(credits=1000)
    first = platform.client.post(
        "/api/v1/lipsync-image",
        json=image_body(platform, f"{platform.media.url}/speech-3s.wav"),
        headers=bearer(key),
    ).json()["id"]
    second = platform.client.post(
        "/api/v1/lipsync-image", json=image_body(platform, long_audio), headers=bearer(key)
    ).json()["id"]
    busy = platform.client.delete(f"/api/v1/jobs/{second}", headers=bearer(key))
    assert (busy.status_code, busy.json()["code"]) == (409, "job_processing")
    listed = platform.client.get("/api/v1/jobs", params={"limit": 1}, headers=bearer(key)).json()
    assert [job["id"] for job in listed["data"]] == [second]
    rest = platform.client.get(
        "/api/v1/jobs", params={"limit": 1, "cursor": listed["next_cursor"]}, headers=bearer(key)
    ).json()
    assert [job["id"] for job in rest["data"]] == [first] and rest["next_cursor"] is None
    assert platform.client.post(f"/api/v1/jobs/{second}/cancel", headers=bearer(key)).is_success
    wait_until_finished(platform.client, first, key, timeout_s=120)
    canceled = platform.client.get(
        "/api/v1/jobs", params={"status": "canceled"}, headers=bearer(key)
    ).json()
    assert [job["id"] for job in canceled["data"]] == [second]
