"""Many jobs of one account at once, through the whole stack: never overspent, never twice."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import Platform
from tests.integration.harness import bearer, ctl

pytestmark = pytest.mark.integration

JOBS = 100
PRICE = 10  # 3.2 s of audio at 480p: the 5 s minimum at 2 credits/s
KEYS = 10  # polling 100 jobs from one key would trip the per-key rate limit


def test_100_simultaneous_jobs_against_credits_for_10(platform: Platform) -> None:
    account_id, first_key = platform.account(credits=10 * PRICE)
    keys = [first_key] + [
        ctl(platform.env, "key", "create", "--account", account_id)["key"] for _ in range(KEYS - 1)
    ]
    body = {
        "formState": {
            "image": f"{platform.media.url}/portrait.jpg",
            "audio": f"{platform.media.url}/speech-3s.wav",
        }
    }

    def submit(index: int) -> str:
        # Every submit passes the gateway's balance check: nothing is reserved yet.
        response = platform.client.post(
            "/api/v1/lipsync-image", json=body, headers=bearer(keys[index % KEYS])
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        job_ids = list(pool.map(submit, range(JOBS)))

    finished: dict[str, dict] = {}
    deadline = time.monotonic() + 240
    while len(finished) < JOBS and time.monotonic() < deadline:
        for index, job_id in enumerate(job_ids):
            if job_id in finished:
                continue
            job = platform.client.get(
                f"/api/v1/jobs/{job_id}", headers=bearer(keys[index % KEYS])
            ).json()
            if job["status"] != "processing":
                finished[job_id] = job
        time.sleep(1.0)
    assert len(finished) == JOBS, f"{JOBS - len(finished)} jobs still processing"

    statuses = Counter(job["status"] for job in finished.values())
    assert statuses == {"completed": 10, "failed": 90}
    for job in finished.values():
        if job["status"] == "failed":
            assert job["error"].startswith("insufficient credits"), job["error"]
            assert job["credits"] == 0
        else:
            assert job["credits"] == PRICE
    assert platform.settled_balance(account_id, expected=0) == 0
    # One grant, a reserve and a capture per completed job; each refused job only closed
    # its id with a zero release (so a late reserve for it can never hold credits).
    history = ctl(platform.env, "credits", "history", "--account", account_id, "--limit", "200")
    kinds = Counter(entry["kind"] for entry in history["data"])
    assert kinds == {"grant": 1, "reserve": 10, "capture": 10, "release": 90}, kinds
    assert all(entry["credits"] == 0 for entry in history["data"] if entry["kind"] == "release")
