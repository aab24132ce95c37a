"""The fault suite's judges fail when they should: on small, hand-made outcomes (no stack).

These run in plain `make test`: a check that could never fail would let the
fault suite pass whatever the stack did.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pytest

from lipsync.jobs.v1 import jobs_pb2
from tests.faults import checks
from tests.faults.receivers import Attempt
from tests.faults.scenario import Account, FaultRun, Job

ACCOUNT = Account("acct", "sk_key", 100)
TIGHT = Account("tight", "sk_tight", 0)
FINISHED_AT = 1_800_000_000.0


class NoFaults:
    """Stands in for StackControl: no fault touched anything."""

    faults: ClassVar[list[Any]] = []

    def touched(self, start: float, end: float, processes: set[str] | None = None) -> bool:
        return False


class Recorded:
    """Stands in for a receiver: the attempts it saw."""

    def __init__(self, *attempts: Attempt) -> None:
        self.attempts = list(attempts)

    def by_job(self) -> dict[str, list[Attempt]]:
        grouped: dict[str, list[Attempt]] = {}
        for attempt in self.attempts:
            grouped.setdefault(attempt.job_id, []).append(attempt)
        return grouped


def job(
    job_id: str, status: str | None, credits: int, receiver: str = "", shape: str = "image"
) -> Job:
    final = None
    if status is not None:
        error = "audio could not be downloaded" if status == "failed" else ""
        final = {"id": job_id, "status": status, "credits": credits, "error": error}
    return Job(job_id, ACCOUNT, shape, receiver, FINISHED_AT - 5, 0, final=final)


def delivered(job_id: str, status: str, webhook_id: str = "", after_s: float = 0.1) -> Attempt:
    return Attempt(FINISHED_AT + after_s, job_id, webhook_id or f"msg_{job_id}", status, True)


def a_run(jobs: list[Job], **receivers: Recorded) -> FaultRun:
    run = FaultRun(
        env={},
        http_url="",
        control=NoFaults(),  # type: ignore[arg-type]
        watch=None,  # type: ignore[arg-type]
        media=None,  # type: ignore[arg-type]
        receivers={"steady": Recorded(), "flaky": Recorded(), "hanging": Recorded(), **receivers},  # type: ignore[dict-item]
        rng=random.Random(0),
    )
    run.accounts, run.tight = [ACCOUNT], TIGHT
    run.jobs = {each.id: each for each in jobs}
    return run


def entry(kind: str, credits: int, job_id: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "credits": credits, "job_id": job_id}


# One completed job (10 credits, captured), one failed before its reserve, one canceled.
JOBS = [
    job("done", "completed", 10, "steady"),
    job("bad", "failed", 0, shape="trickle"),
    job("stop", "canceled", 0),
]
LEDGER = [
    entry("grant", 100),
    entry("reserve", 10, "done"),
    entry("capture", 10, "done"),
    entry("reserve", 10, "stop"),
    entry("release", 10, "stop"),
]
BALANCE = {"api_credits": 90, "reserved_credits": 0}
ZERO = {"api_credits": 0, "reserved_credits": 0}


def judge(
    jobs: list[Job],
    ledger: list[dict[str, Any]],
    balance: dict[str, int],
    receivers: dict[str, Recorded] | None = None,
    finished: dict[str, float] | None = None,
) -> list[str]:
    run = a_run(jobs, **(receivers or {"steady": Recorded(delivered("done", "completed"))}))
    verdict = checks.Verdict()
    checks.check_terminal(run, verdict)
    checks.check_billing(
        run, verdict, {"acct": ledger, "tight": []}, {"acct": balance, "tight": ZERO}
    )
    rows = {}
    for each in jobs:
        row = jobs_pb2.Job(id=each.id)
        row.finished_at.FromNanoseconds(int((finished or {}).get(each.id, FINISHED_AT) * 1e9))
        rows[each.id] = row
    checks.check_webhooks(run, verdict, rows)
    return verdict.failures


def test_a_clean_outcome_passes() -> None:
    assert judge(JOBS, LEDGER, BALANCE) == []


def test_a_job_left_processing_fails() -> None:
    failures = judge([*JOBS, job("stuck", None, 0)], LEDGER, BALANCE)
    assert any("still processing" in failure for failure in failures)


def test_a_second_capture_fails() -> None:
    twice = [*LEDGER, entry("capture", 10, "done")]
    failures = judge(JOBS, twice, {"api_credits": 80, "reserved_credits": 0})
    assert any("captured 2 times" in failure for failure in failures)


def test_a_capture_for_a_canceled_job_fails() -> None:
    charged = [*LEDGER[:3], entry("reserve", 10, "stop"), entry("capture", 10, "stop")]
    failures = judge(JOBS, charged, {"api_credits": 80, "reserved_credits": 0})
    assert any("canceled job stop captured" in failure for failure in failures)


@pytest.mark.parametrize(
    ("balance", "message"),
    [
        ({"api_credits": 95, "reserved_credits": 0}, "granted 100 != balance 95"),
        ({"api_credits": 90, "reserved_credits": 10}, "10 credits still reserved"),
    ],
)
def test_credits_not_conserved_fail(balance: dict[str, int], message: str) -> None:
    assert any(message in failure for failure in judge(JOBS, LEDGER, balance))


def test_a_lost_webhook_fails() -> None:
    failures = judge(JOBS, LEDGER, BALANCE, receivers={"steady": Recorded()})
    assert any("never delivered" in failure for failure in failures)


def test_attempts_with_two_webhook_ids_fail() -> None:
    attempts = Recorded(
        delivered("done", "completed", "msg_a"), delivered("done", "completed", "msg_b")
    )
    failures = judge(JOBS, LEDGER, BALANCE, receivers={"steady": attempts})
    assert any("webhook-ids" in failure for failure in failures)


def test_a_webhook_with_the_wrong_status_fails() -> None:
    failures = judge(
        JOBS, LEDGER, BALANCE, receivers={"steady": Recorded(delivered("done", "failed"))}
    )
    assert any("webhook said failed" in failure for failure in failures)


def test_a_late_first_attempt_fails() -> None:
    late = Recorded(delivered("done", "completed", after_s=checks.MAX_WEBHOOK_DELAY_S + 3))
    failures = judge(JOBS, LEDGER, BALANCE, receivers={"steady": late})
    assert any("after its job ended" in failure for failure in failures)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert checks.percentile(values, 50) == 50.0
    assert checks.percentile(values, 99) == 99.0
    assert checks.percentile([3.0], 99) == 3.0
    assert checks.percentile([], 50) is None


def test_an_unexpected_failure_fails() -> None:
    failures = judge([*JOBS, job("odd", "failed", 0)], LEDGER, BALANCE)
    assert any("job odd (image) failed" in failure for failure in failures)
