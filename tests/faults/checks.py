"""What the fault suite requires once the run is over, and the figures it reports.

Each check adds a line to `failures` instead of stopping at the first, so one
run shows everything that went wrong next to the summary. The rules:

* every job ended (none left `processing`) within the run's deadline;
* billing, from the operator's ledger (`lipsyncctl credits history`): each
  completed job captured exactly once, for the credits its object shows; no
  capture for a failed or canceled job (whose `credits` reads 0); at most one
  reserve per job; no ledger entry for a job the client never got a 202 for;
  per account, granted == balance + captured, with nothing left reserved;
* webhooks: every ended job with a well-behaved receiver delivered, with the
  job's final status; all of a job's attempts, at any receiver, with one
  `webhook-id`, and no two jobs sharing one; no attempt for a job without webhook;
* the steady receiver's first attempt within `MAX_WEBHOOK_DELAY_S` of the
  job's end while the hanging receiver holds its connections (jobs whose end
  a job_service or NATS fault touched are reported, not judged);
* a cancel answered 200 ends the job `canceled`, charged nothing, read so
  within `CANCEL_WITHIN_S`; a cancel of an ended job is `409 job_finished`;
* no job exists that the client was refused (503) or never heard of;
* replaying every stored event after the end changes no job and no ledger.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.faults.event_watch import EventWatch, StoredEvent, by_job
from tests.faults.scenario import Account, FaultRun, Job
from tests.integration.harness import ctl

MAX_WEBHOOK_DELAY_S = 5.0
CANCEL_WITHIN_S = 5.0
WELL_BEHAVED = ("steady", "flaky")
# How long before a SIGKILL of job_service a stored job may have had no answer.
CRASH_WINDOW_S = 1.0
# The processes whose faults delay a cancel (billing releases after it, on its own).
CANCEL_FAULTS = {"inference_service", "nats-server", "job_service"}
# The processes whose faults delay a dispatch (billing is called after `started`).
DISPATCH_FAULTS = {"inference_service", "nats-server", "job_service"}
TERMINAL = ("completed", "failed", "canceled")
# The reaper's message for a job whose worker died on each of its deliveries.
GAVE_UP = "could not be processed after"


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)


def _seconds(value: Any) -> float:
    return float(value.seconds) + value.nanos / 1e9


def _rfc3339(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def ledger(env: dict[str, str], account_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = ctl(
            env,
            *("credits", "history", "--account", account_id, "--limit", "200"),
            *(("--cursor", cursor) if cursor else ()),
        )
        entries.extend(page["data"])
        cursor = page["next_cursor"] or ""
        if not cursor:
            return entries


def balance(env: dict[str, str], account_id: str) -> dict[str, Any]:
    return ctl(env, "credits", "balance", "--account", account_id)


def job_rows(env: dict[str, str], jobs: list[Job]) -> dict[str, jobs_pb2.Job]:
    """job_service's own records (with `finished_at`), read over gRPC."""
    rows: dict[str, jobs_pb2.Job] = {}
    with grpc.insecure_channel(env["LIPSYNC_JOBS_ADDR"]) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        for job in jobs:
            reply = stub.GetJob(
                jobs_pb2.GetJobRequest(job_id=job.id, account_id=job.account.id), timeout=10
            )
            rows[job.id] = reply.job
    return rows


def listed_jobs(env: dict[str, str], account_id: str) -> dict[str, float] | None:
    """Every job job_service holds for the account, with its creation time; None when
    ListJobs is not served."""
    jobs: dict[str, float] = {}
    cursor = ""
    with grpc.insecure_channel(env["LIPSYNC_JOBS_ADDR"]) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        while True:
            try:
                reply = stub.ListJobs(
                    jobs_pb2.ListJobsRequest(account_id=account_id, limit=100, cursor=cursor),
                    timeout=10,
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return None
                raise
            jobs.update((job.id, _seconds(job.created_at)) for job in reply.jobs)
            cursor = reply.next_cursor
            if not cursor:
                return jobs


def balances(env: dict[str, str], accounts: list[Account]) -> dict[str, dict[str, Any]]:
    return {account.id: balance(env, account.id) for account in accounts}


def check_terminal(run: FaultRun, verdict: Verdict) -> None:
    jobs = list(run.jobs.values())
    stuck = [job.id for job in jobs if job.final is None]
    verdict.require(not stuck, f"{len(stuck)} jobs still processing at the deadline: {stuck[:5]}")
    statuses = Counter(job.final["status"] if job.final else "processing" for job in jobs)
    verdict.summary["jobs"] = {
        "submitted": len(jobs),
        "with_webhook": sum(1 for job in jobs if job.receiver),
        "accounts": len(run.accounts) + 1,
        "by_status": dict(statuses),
        "by_shape": dict(Counter(job.shape for job in jobs)),
        "refused_503_then_retried": run.refused_503,
        "refused_402": run.refused_402,
    }
    failed_errors: Counter[str] = Counter()
    for job in jobs:
        if job.final is None or job.final["status"] != "failed":
            continue
        error = str(job.final["error"])
        failed_errors[error.split(":")[0][:80]] += 1
        expected = (
            job.shape == "trickle"
            or job.account is run.tight
            # The reaper: the worker died on each delivery (the suite kills it 3 times).
            or GAVE_UP in error
        )
        verdict.require(expected, f"job {job.id} ({job.shape}) failed: {error}")
    verdict.summary["jobs"]["failed_because"] = dict(failed_errors)


def check_billing(
    run: FaultRun,
    verdict: Verdict,
    ledgers: dict[str, list[dict[str, Any]]],
    balances: dict[str, dict[str, Any]],
    excused: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`excused`: jobs stored as job_service was killed (see check_no_phantoms)."""
    figures: dict[str, Any] = {"captures": 0, "captured_credits": 0, "accounts": {}}
    for account in [*run.accounts, run.tight]:
        assert account is not None
        entries = ledgers[account.id]
        mine = {job.id: job for job in run.jobs.values() if job.account is account}
        kinds: dict[str, Counter[str]] = {}
        captured: dict[str, int] = {}
        for entry in entries:
            job_id = entry.get("job_id")
            if not job_id:
                continue
            kinds.setdefault(job_id, Counter())[entry["kind"]] += 1
            if entry["kind"] == "capture":
                captured[job_id] = captured.get(job_id, 0) + int(entry["credits"])
        unknown = sorted(set(kinds) - set(mine) - excused)
        verdict.require(not unknown, f"ledger entries for jobs never accepted: {unknown[:5]}")
        for job_id, job in mine.items():
            counted = kinds.get(job_id, Counter())
            status = job.final["status"] if job.final else "processing"
            verdict.require(counted["reserve"] <= 1, f"job {job_id} reserved {counted} times")
            if status == "completed":
                verdict.require(
                    counted["capture"] == 1,
                    f"completed job {job_id} captured {counted['capture']} times",
                )
                verdict.require(
                    job.final is not None and captured.get(job_id) == job.final["credits"],
                    f"completed job {job_id} captured {captured.get(job_id)} credits"
                    f" but reads {job.final and job.final['credits']}",
                )
            elif status in ("failed", "canceled"):
                verdict.require(
                    counted["capture"] == 0, f"{status} job {job_id} captured {counted}"
                )
                verdict.require(
                    job.final is not None and job.final["credits"] == 0,
                    f"{status} job {job_id} reads credits {job.final and job.final['credits']}",
                )
        granted = sum(int(e["credits"]) for e in entries if e["kind"] == "grant")
        total_captured = sum(captured.values())
        now = balances[account.id]
        verdict.require(
            granted == int(now["api_credits"]) + total_captured,
            f"account {account.id}: granted {granted} != balance {now['api_credits']}"
            f" + captured {total_captured}",
        )
        verdict.require(
            int(now["reserved_credits"]) == 0,
            f"account {account.id}: {now['reserved_credits']} credits still reserved",
        )
        figures["captures"] += sum(1 for job_id in mine if kinds.get(job_id, Counter())["capture"])
        figures["captured_credits"] += total_captured
        figures["accounts"][account.id] = {
            "granted": granted,
            "balance": int(now["api_credits"]),
            "captured": total_captured,
            "reserved": int(now["reserved_credits"]),
        }
    return figures


def check_webhooks(
    run: FaultRun, verdict: Verdict, rows: dict[str, jobs_pb2.Job]
) -> dict[str, Any]:
    attempts_by_receiver = {name: r.by_job() for name, r in run.receivers.items()}
    webhook_ids: dict[str, str] = {}
    delivered = expected = 0
    delays: list[float] = []
    delays_faulted: list[float] = []
    duplicates = 0
    for job in run.jobs.values():
        everywhere = [
            (name, attempt)
            for name, attempts in attempts_by_receiver.items()
            for attempt in attempts.get(job.id, [])
        ]
        elsewhere = [name for name, _ in everywhere if name != job.receiver]
        verdict.require(not elsewhere, f"job {job.id} posted to {elsewhere}, not {job.receiver!r}")
        ids = {attempt.webhook_id for _, attempt in everywhere}
        verdict.require(len(ids) <= 1, f"job {job.id}: attempts with webhook-ids {ids}")
        for webhook_id in ids:
            other = webhook_ids.setdefault(webhook_id, job.id)
            verdict.require(other == job.id, f"webhook-id {webhook_id} of {other} and {job.id}")
        if job.receiver not in WELL_BEHAVED or job.final is None:
            continue
        expected += 1
        answered = [attempt for _, attempt in everywhere if attempt.answered]
        if not answered:
            verdict.require(False, f"job {job.id} ({job.receiver}): webhook never delivered")
            continue
        delivered += 1
        duplicates += len(answered) - 1
        verdict.require(
            answered[0].status == job.final["status"],
            f"job {job.id}: webhook said {answered[0].status}, job is {job.final['status']}",
        )
        row = rows.get(job.id)
        if job.receiver == "steady" and row is not None and row.HasField("finished_at"):
            finished = _seconds(row.finished_at)
            first = min(attempt.at for _, attempt in everywhere)
            delay = max(0.0, first - finished)
            faulted = run.control.touched(finished, first, {"job_service", "nats-server"})
            (delays_faulted if faulted else delays).append(delay)
    worst = max(delays, default=0.0)
    verdict.require(
        worst <= MAX_WEBHOOK_DELAY_S,
        f"a steady receiver's webhook came {worst:.1f} s after its job ended",
    )
    hanging = run.receivers["hanging"]
    return {
        "well_behaved_expected": expected,
        "well_behaved_delivered": delivered,
        "repeat_deliveries": duplicates,
        "hanging_receiver_attempts": sum(len(a) for a in hanging.by_job().values()),
        "flaky_receiver_attempts": sum(len(a) for a in attempts_by_receiver["flaky"].values()),
        "steady_first_attempt_delay_s": {
            "jobs": len(delays),
            "p50": _round(percentile(delays, 50)),
            "max": _round(max(delays, default=None)),
        },
        "steady_delay_when_job_service_or_nats_faulted_s": {
            "jobs": len(delays_faulted),
            "max": _round(max(delays_faulted, default=None)),
        },
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def dispatch_latency(
    run: FaultRun, stored: list[StoredEvent], rows: dict[str, jobs_pb2.Job], slots: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accepted (createdAt) to the worker's first `started`, for jobs no fault touched.

    Also split by whether one of the worker's `slots` was free for the job when
    it was accepted (jobs the worker held, started and not yet ended, plus jobs
    accepted before it and not yet taken, fewer than `slots`), since a full
    worker makes a job wait in the queue however healthy the platform is.
    """
    events = by_job(stored)
    kills = sorted(f.began for f in run.control.faults if f.process == "inference_service")
    # When the worker held each attempt: from its `started` until the job ended, the
    # next attempt started, or the worker was killed, whichever came first.
    spans: list[tuple[float, float]] = []
    for job_events in events.values():
        own = [e for e in job_events if not e.replayed]
        began = sorted(_seconds(e.event.occurred_at) for e in own if e.kind == "started")
        ended = [_seconds(e.event.occurred_at) for e in own if e.kind in TERMINAL]
        for index, start in enumerate(began):
            limits = [
                min(ended, default=float("inf")),
                began[index + 1] if index + 1 < len(began) else float("inf"),
                next((kill for kill in kills if kill > start), float("inf")),
            ]
            spans.append((start, min(limits)))
    # When each job was accepted, and taken by a worker (or ended untaken).
    taken: list[tuple[float, float]] = []
    for job in run.jobs.values():
        row = rows.get(job.id)
        own = [e for e in events.get(job.id, []) if not e.replayed]
        times = [_seconds(e.event.occurred_at) for e in own if e.kind == "started"] or [
            _seconds(e.event.occurred_at) for e in own if e.kind in TERMINAL
        ]
        if row is not None and times:
            taken.append((_seconds(row.created_at), min(times)))
    clean: list[float] = []
    free: list[float] = []
    per_job: list[dict[str, Any]] = []
    touched = 0
    for job in run.jobs.values():
        starts = [e for e in events.get(job.id, []) if e.kind == "started"]
        row = rows.get(job.id)
        if not starts or row is None:
            continue
        attempts = {e.event.started.attempt for e in starts}
        created = _seconds(row.created_at)
        started = min(_seconds(e.event.occurred_at) for e in starts)
        if attempts != {1} or run.control.touched(created, started, DISPATCH_FAULTS):
            touched += 1
            continue
        held = sum(1 for begin, end in spans if begin <= created < end)
        ahead = sum(1 for accepted, took in taken if accepted < created < took)
        clean.append(started - created)
        if held + ahead < slots:
            free.append(started - created)
        per_job.append(
            {
                "job": job.id,
                "shape": job.shape,
                "ms": _ms(started - created),
                "held": held,
                "ahead": ahead,
            }
        )
    figures = {
        "jobs": len(clean),
        "left_out_touched_by_a_fault": touched,
        "p50_ms": _ms(percentile(clean, 50)),
        "p99_ms": _ms(percentile(clean, 99)),
        "max_ms": _ms(max(clean, default=None)),
        "with_a_free_worker_slot": {
            "jobs": len(free),
            "p50_ms": _ms(percentile(free, 50)),
            "p99_ms": _ms(percentile(free, 99)),
        },
    }
    return figures, per_job


def check_outputs(run: FaultRun, verdict: Verdict, results_dir: Path) -> dict[str, Any]:
    """Every completed job's output is stored; report outputs kept for jobs that did not complete.

    A render that finishes as its job is canceled stores its file before the
    worker sees the cancel; nothing points at that file afterwards.
    """
    stored = {path.name.split(".")[0] for path in results_dir.glob("*") if path.is_file()}
    missing = [
        job.id
        for job in run.jobs.values()
        if job.final and job.final["status"] == "completed" and job.id not in stored
    ]
    verdict.require(not missing, f"completed jobs without an output file: {missing[:5]}")
    orphans = Counter(
        job.final["status"]
        for job in run.jobs.values()
        if job.final and job.final["status"] != "completed" and job.id in stored
    )
    return {
        "files": len(stored),
        "completed_without_file": len(missing),
        "files_of_jobs_not_completed": dict(orphans),
    }


def events_after_the_end(stored: list[StoredEvent]) -> dict[str, int]:
    """Events the services published (not the suite's replays) after a job's first terminal one."""
    late: Counter[str] = Counter()
    for job_events in by_job(stored).values():
        ended = False
        for event in job_events:
            if ended and not event.replayed:
                late[event.kind] += 1
            ended = ended or event.kind in TERMINAL
    return dict(late)


def worker_lines(log_path: Path) -> dict[str, list[tuple[float, str]]]:
    """The worker's log lines that name a job, by job id: (time, message)."""
    lines: dict[str, list[tuple[float, str]]] = {}
    if not log_path.is_file():
        return lines
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("job_id"):
            at = _rfc3339(str(record["ts"]))
            lines.setdefault(str(record["job_id"]), []).append((at, str(record.get("msg", ""))))
    return lines


def check_cancels(
    run: FaultRun,
    verdict: Verdict,
    watch: EventWatch,
    worker_log: dict[str, list[tuple[float, str]]],
) -> dict[str, Any]:
    if run.cancel_missing:
        return {"available": False, "why": run.cancel_missing}
    to_read: list[float] = []
    to_quiet: list[float] = []
    to_logged: list[float] = []
    answers: Counter[str] = Counter()
    completed_after_cancel = started_again = 0
    for cancel in run.cancels:
        job = run.jobs[cancel.job_id]
        final = job.final["status"] if job.final else "processing"
        cancel.final_status = final
        answers[f"{cancel.status_code} {cancel.code}".strip()] += 1
        if cancel.status_code == 409:
            verdict.require(cancel.code == "job_finished", f"cancel of {job.id}: 409 {cancel.code}")
            continue
        if cancel.status_code != 200:
            verdict.require(False, f"cancel of {job.id} answered {cancel.status_code}")
            continue
        verdict.require(
            final == "canceled", f"cancel of {job.id} answered 200 but the job is {final}"
        )
        verdict.require(
            job.final is None or job.final["credits"] == 0,
            f"canceled job {job.id} reads credits {job.final and job.final['credits']}",
        )
        faulted = run.control.touched(cancel.at, cancel.at + CANCEL_WITHIN_S, CANCEL_FAULTS)
        # A worker publishes progress at least every second while it holds a job, so its
        # last notice is when it let go; its first log line after the cancel says how.
        # A later delivery of the job (after a worker kill) starts a new attempt.
        logged = [(at, msg) for at, msg in worker_log.get(job.id, []) if at >= cancel.at]
        cancel.worker_last_msg = min(logged)[1] if logged else ""
        again = [at for at, msg in logged if msg == "job started"]
        if again:
            started_again += 1
        until = min(again, default=float("inf"))
        notices = [at for at, _, _ in watch.snapshot(job.id).progress if at < until]
        cancel.worker_last_at = max(notices, default=None)
        if any(msg == "job completed" for _, msg in logged):
            completed_after_cancel += 1
        if cancel.canceled_read_at is None:
            verdict.require(faulted, f"job {job.id} not canceled 15 s after its cancel")
            continue
        took = cancel.canceled_read_at - cancel.at
        quiet = max(0.0, (cancel.worker_last_at or cancel.at) - cancel.at)
        if faulted:
            continue
        verdict.require(took <= CANCEL_WITHIN_S, f"job {job.id} read canceled {took:.1f} s after")
        verdict.require(
            quiet <= CANCEL_WITHIN_S,
            f"worker still busy with canceled job {job.id} {quiet:.1f} s after the cancel"
            f" ({cancel.worker_last_msg})",
        )
        if cancel.moment in ("rendering", "downloading"):
            to_read.append(took)
            to_quiet.append(quiet)
            stops = [at for at, msg in logged if "cancel" in msg and at < until]
            if stops:
                to_logged.append(min(stops) - cancel.at)
    return {
        "available": True,
        "asked": len(run.cancels),
        "answers": dict(answers),
        "by_moment": dict(Counter(c.moment for c in run.cancels)),
        "running_cancel_to_reads_canceled_s": {
            "jobs": len(to_read),
            "p50": _round(percentile(to_read, 50)),
            "max": _round(max(to_read, default=None)),
        },
        # The worker's last progress notice for the job, after the cancel.
        "running_cancel_to_worker_quiet_s": {
            "jobs": len(to_quiet),
            "p50": _round(percentile(to_quiet, 50)),
            "max": _round(max(to_quiet, default=None)),
        },
        # The worker's first log line about the cancel ("job canceled", ...).
        "running_cancel_to_worker_logged_stop_s": {
            "jobs": len(to_logged),
            "p50": _round(percentile(to_logged, 50)),
            "max": _round(max(to_logged, default=None)),
        },
        "worker_logged_completed_after_cancel": completed_after_cancel,
        # A delivery of a canceled job (after a worker kill) that a worker began again.
        "canceled_jobs_started_again": started_again,
    }


def check_no_phantoms(run: FaultRun, verdict: Verdict) -> tuple[dict[str, Any], frozenset[str]]:
    """No job exists that its client was not told of with a 202.

    One window is inherent: job_service SIGKILLed after it stored a job and
    before its answer left; the gateway can only answer 503 then. Such a job,
    created within `CRASH_WINDOW_S` of a SIGKILL of job_service, is counted,
    not judged.
    """
    accepted = set(run.jobs)
    kills = [
        f.began for f in run.control.faults if f.process == "job_service" and "SIGKILL" in f.what
    ]
    phantoms: list[str] = []
    in_crash_window: set[str] = set()
    for account in [*run.accounts, run.tight]:
        assert account is not None
        listed = listed_jobs(run.env, account.id)
        if listed is None:
            return {"checked": False, "why": "ListJobs not served by job_service"}, frozenset()
        for job_id, created in sorted(listed.items()):
            if job_id in accepted:
                continue
            if any(kill - CRASH_WINDOW_S <= created <= kill for kill in kills):
                in_crash_window.add(job_id)
            else:
                phantoms.append(job_id)
    verdict.require(not phantoms, f"jobs that no client got a 202 for: {phantoms[:5]}")
    figures = {
        "checked": True,
        "phantom_jobs": len(phantoms),
        "stored_as_job_service_was_killed": len(in_crash_window),
    }
    return figures, frozenset(in_crash_window)
