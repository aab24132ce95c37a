"""`Job.wait` against a server that does not hold requests: it falls back to polling with backoff.

The stack honours `Prefer: wait` (tests/sdk/test_client.py waits on it); an
older or proxied server may not, answering at once without
`Preference-Applied`. A scripted loopback server plays that one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from lipsync_client import Client, Job, WaitTimeoutError

from tests.sdk.servers import ScriptedServer

PROCESSING = {
    "id": "job-1",
    "model": "lipsync-image",
    "status": "processing",
    "progress": {"stage": "rendering", "percent": 40, "etaSeconds": 3},
}
COMPLETED = {**PROCESSING, "status": "completed", "progress": None, "output": "http://x/y.mp4"}


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer([])
    yield server
    server.close()


def test_polls_with_a_growing_interval_when_prefer_is_ignored(scripted: ScriptedServer) -> None:
    scripted.answers = [(200, {}, PROCESSING), (200, {}, PROCESSING), (200, {}, COMPLETED)]
    seen: list[str] = []
    with Client(api_key="sk_test", base_url=scripted.url) as client:
        job = Job(id="job-1", _client=client)
        started = time.monotonic()
        job.wait(on_progress=lambda current: seen.append(current.status))
        elapsed = time.monotonic() - started
    assert job.status == "completed" and job.output == "http://x/y.mp4"
    # Slept 1 s, then 1.5 s: backing off, not hammering.
    assert 2.4 <= elapsed < 5
    assert [r[2]["prefer"] for r in scripted.requests] == ["wait=2"] * 3
    assert seen == ["processing", "processing", "completed"]


def test_a_timeout_is_never_held_past(scripted: ScriptedServer) -> None:
    scripted.answers = [(200, {}, PROCESSING)] * 5
    with Client(api_key="sk_test", base_url=scripted.url) as client:
        job = Job(id="job-1", _client=client)
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError):
            job.wait(timeout=1.5)
        assert time.monotonic() - started < 2.5
    # The first read asked to be held 1 s at most; under a second left, no Prefer at all.
    assert scripted.requests[0][2]["prefer"] == "wait=1"
    assert "prefer" not in scripted.requests[-1][2]
