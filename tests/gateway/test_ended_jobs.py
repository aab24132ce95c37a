from __future__ import annotations

from gateway.ended_jobs import EndedJobs
from lipsync.jobs.v1 import jobs_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str, status: int, account: str = "acct") -> jobs_pb2.Job:
    return jobs_pb2.Job(id=job_id, account_id=account, status=status)  # type: ignore[arg-type]


def test_only_ended_jobs_are_kept() -> None:
    cache = EndedJobs()
    cache.put(job("p", jobs_pb2.JOB_STATUS_PROCESSING), b"p")
    for status in (
        jobs_pb2.JOB_STATUS_COMPLETED,
        jobs_pb2.JOB_STATUS_FAILED,
        jobs_pb2.JOB_STATUS_CANCELED,
    ):
        cache.put(job(str(status), status), b"ended")
        assert cache.get(str(status), "acct") == b"ended"
    assert cache.get("p", "acct") is None


def test_another_accounts_job_never_hits() -> None:
    cache = EndedJobs()
    cache.put(job("j", jobs_pb2.JOB_STATUS_COMPLETED, account="owner"), b"body")
    assert cache.get("j", "someone-else") is None
    assert cache.get("j", "owner") == b"body"


def test_entries_expire_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache = EndedJobs(max_entries=2, ttl_s=10, clock=clock)
    for name in ("a", "b"):
        cache.put(job(name, jobs_pb2.JOB_STATUS_COMPLETED), name.encode())
    assert cache.get("a", "acct") == b"a"  # "a" is now the most recently used
    cache.put(job("c", jobs_pb2.JOB_STATUS_COMPLETED), b"c")
    assert cache.get("b", "acct") is None
    assert cache.get("a", "acct") == b"a"
    clock.now = 10.0
    assert cache.get("a", "acct") is None and cache.get("c", "acct") is None


def test_a_forgotten_job_is_read_again() -> None:
    cache = EndedJobs()
    cache.put(job("j", jobs_pb2.JOB_STATUS_COMPLETED), b"body")
    cache.forget("j")
    assert cache.get("j", "acct") is None
