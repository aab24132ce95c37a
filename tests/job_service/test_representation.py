from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from job_service.representation import job_proto
from job_service.store import JobRow
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.jobjson import job_to_json
from lipsync_common.signing import verify
from tests.job_specs import image_spec

KEY = b"k" * 32


def row(status: int, **changes: object) -> JobRow:
    base = {
        "id": "6b0f7f02-6f39-4a39-8f2e-4cf0f8f2b3a1",
        "account_id": "acct",
        "model": "lipsync-image",
        "status": status,
        "spec": image_spec().SerializeToString(deterministic=True),
        "webhook": "",
        "created_at": 1_700_000_000.0,
        "finished_at": None,
        "output_key": "",
        "error": "",
        "execution_time_ms": None,
        "timings": {},
        "credits": None,
        "seed": None,
    }
    base.update(changes)
    return JobRow(**base)  # type: ignore[arg-type]


def test_processing_job_has_the_contract_nulls() -> None:
    body = job_to_json(job_proto(row(jobs_pb2.JOB_STATUS_PROCESSING), "https://api", KEY, 60))
    assert body["status"] == "processing"
    assert body["model"] == "lipsync-image"
    assert body["output"] is None and body["executionTime"] is None
    assert body["timings"] is None and body["credits"] is None and body["error"] == ""


def test_completed_job_gets_a_signed_url_valid_for_the_retention() -> None:
    finished = row(
        jobs_pb2.JOB_STATUS_COMPLETED,
        finished_at=1_700_000_100.0,
        output_key="abc.mp4",
        execution_time_ms=1234,
        timings={"inference": 1000},
        credits=10,
        seed=3,
    )
    body = job_to_json(
        job_proto(finished, "https://api.example", KEY, ttl_s=3600, now=1_700_000_200.0)
    )
    url = urlsplit(body["output"])
    assert (url.scheme, url.netloc, url.path) == ("https", "api.example", "/files/abc.mp4")
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert int(query["expires"]) == 1_700_000_100 + 3600
    assert verify(KEY, "abc.mp4", int(query["expires"]), query["sig"], now=1_700_000_200)
    assert body["executionTime"] == 1234 and body["credits"] == 10 and body["seed"] == 3
    assert body["timings"] == {"inference": 1000}


def test_failed_job_has_no_output_and_zero_credits() -> None:
    failed = row(jobs_pb2.JOB_STATUS_FAILED, error="no face found in image", credits=0)
    body = job_to_json(job_proto(failed, "https://api", KEY, 60))
    assert body["status"] == "failed" and body["output"] is None
    assert body["error"] == "no face found in image" and body["credits"] == 0


def test_an_output_past_its_retention_reads_null() -> None:
    finished = row(jobs_pb2.JOB_STATUS_COMPLETED, finished_at=1_700_000_000.0, output_key="a.mp4")
    kept = job_proto(finished, "https://api", KEY, ttl_s=60, now=1_700_000_059.0)
    assert job_to_json(kept)["output"] is not None
    expired = job_proto(finished, "https://api", KEY, ttl_s=60, now=1_700_000_060.0)
    assert job_to_json(expired)["output"] is None and job_to_json(expired)["status"] == "completed"
