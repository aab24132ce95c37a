"""`make test-faults`: ~100 jobs through worker, job_service, billing and NATS kills.

The run (tests/faults/scenario.py) submits jobs in waves while the stack is
hurt on a timeline; then the checks of tests/faults/checks.py judge what
every job, ledger and receiver shows. The figures are printed in one block
and written to bench-report/faults.json; the test fails on any broken rule
(a job left processing, a second charge, a lost webhook, ...), after printing.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from lipsync_common.devstack import Stack
from tests.faults import checks, report
from tests.faults.conftest import LOGS_COPY
from tests.faults.event_watch import EventWatch
from tests.faults.receivers import HangingReceiver, TrickleHost, WebhookReceiver
from tests.faults.scenario import FaultMedia, FaultRun
from tests.faults.stack_control import StackControl
from tests.integration.harness import MediaHost, bearer

pytestmark = pytest.mark.faults

ACCOUNTS = 4
CREDITS = 5000
WEBHOOKS_DEADLINE_S = 120.0
SETTLE_DEADLINE_S = 30.0


def wait_for_webhooks(run: FaultRun, deadline_s: float) -> None:
    """Until every ended job with a well-behaved receiver has one answered attempt."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        answered = {
            job_id
            for name in checks.WELL_BEHAVED
            for job_id, attempts in run.receivers[name].by_job().items()
            if any(attempt.answered for attempt in attempts)
        }
        waiting = [
            job
            for job in run.jobs.values()
            if job.receiver in checks.WELL_BEHAVED and job.final and job.id not in answered
        ]
        if not waiting:
            return
        time.sleep(1.0)


def wait_for_settlement(run: FaultRun, deadline_s: float) -> None:
    """Until no account holds a reservation (billing settles from the events stream)."""
    deadline = time.monotonic() + deadline_s
    accounts = [*run.accounts, run.tight]
    while time.monotonic() < deadline:
        if all(checks.balance(run.env, a.id)["reserved_credits"] == 0 for a in accounts if a):
            return
        time.sleep(1.0)


def snapshot(run: FaultRun) -> dict[str, Any]:
    """Every job as GET shows it and every ledger, to compare before and after a replay."""
    jobs: dict[str, Any] = {}
    with httpx.Client(base_url=run.http_url, timeout=30) as client:
        for job in run.jobs.values():
            body = client.get(f"/api/v1/jobs/{job.id}", headers=bearer(job.account.key)).json()
            jobs[job.id] = (body["status"], body["credits"], body["output"] is None)
    ledgers = {a.id: checks.ledger(run.env, a.id) for a in [*run.accounts, run.tight] if a}
    return {"jobs": jobs, "ledgers": ledgers}


def test_every_job_ends_is_charged_once_and_delivered_under_faults(
    fault_stack: Stack,
    control: StackControl,
    watch: EventWatch,
    media_host: MediaHost,
    trickle_host: TrickleHost,
    receivers: dict[str, WebhookReceiver | HangingReceiver],
    rng: random.Random,
    capsys: pytest.CaptureFixture[str],
) -> None:
    began = time.monotonic()
    run = FaultRun(
        env=fault_stack.env,
        http_url=fault_stack.http_url,
        control=control,
        watch=watch,
        media=FaultMedia(normal=media_host.url, trickle=trickle_host.url),
        receivers=receivers,
        rng=rng,
    )
    run.open_accounts(ACCOUNTS, CREDITS)
    run.run()
    ran_s = time.monotonic() - began
    wait_for_webhooks(run, WEBHOOKS_DEADLINE_S)
    wait_for_settlement(run, SETTLE_DEADLINE_S)

    # Replay every stored event once more, now that all is over: nothing may move.
    before = snapshot(run)
    run.replay_events()
    time.sleep(8)
    after = snapshot(run)

    verdict = checks.Verdict()
    for error in run.errors:
        verdict.require(False, f"the run itself failed: {error}")
    checks.check_terminal(run, verdict)
    rows = checks.job_rows(run.env, [job for job in run.jobs.values() if job.final])
    stored = watch.stored_events()
    moved = [job_id for job_id, seen in before["jobs"].items() if after["jobs"][job_id] != seen]
    verdict.require(not moved, f"jobs changed by the final replay: {moved[:5]}")
    grown = [a for a, entries in before["ledgers"].items() if after["ledgers"][a] != entries]
    verdict.require(not grown, f"ledgers changed by the final replay: {grown}")
    verdict.summary["no_phantom_jobs"], excused = checks.check_no_phantoms(run, verdict)
    accounts = [account for account in [*run.accounts, run.tight] if account]
    verdict.summary["billing"] = checks.check_billing(
        run, verdict, after["ledgers"], checks.balances(run.env, accounts), excused
    )
    verdict.summary["webhooks"] = checks.check_webhooks(run, verdict, rows)
    slots = int(fault_stack.env["LIPSYNC_WORKER_CONCURRENCY"])
    verdict.summary["dispatch_latency"], dispatches = checks.dispatch_latency(
        run, stored, rows, slots
    )
    worker_log = Path(fault_stack.env["LIPSYNC_DATA_DIR"]) / "logs" / "inference_service.log"
    verdict.summary["cancel"] = checks.check_cancels(
        run, verdict, watch, checks.worker_lines(worker_log)
    )
    data_dir = Path(fault_stack.env["LIPSYNC_DATA_DIR"])
    verdict.summary["outputs"] = checks.check_outputs(run, verdict, data_dir / "results")
    # The faults themselves happened, or the figures above prove nothing.
    process_faults = len(control.faults)
    verdict.require(
        control.restarts() == process_faults,
        f"{process_faults} processes killed, {control.restarts()} restarted by the supervisor",
    )
    verdict.require(run.kills_mid_render >= 2, f"{run.kills_mid_render} worker kills mid-render")
    hanging = receivers["hanging"].attempts
    verdict.require(bool(hanging), "the hanging receiver was never called")
    verdict.require(trickle_host.requests > 0, "no input was read from the trickling host")
    verdict.require(run.replayed_events > 0, "no event was replayed")
    verdict.summary["faults"] = {
        "injected": len(run.timeline_log),
        "worker_kills_mid_render": run.kills_mid_render,
        "restarts_by_supervisor": control.restarts(),
        "events_replayed": run.replayed_events,
        "events_in_stream": len(stored),
        "service_events_after_a_terminal_one": checks.events_after_the_end(stored),
        "trickle_downloads_started": trickle_host.requests,
        "timeline": [f"{at:>5.1f}s {what}" for at, what in run.timeline_log],
    }
    verdict.summary["run"] = {
        "workload_s": round(ran_s, 1),
        "total_s": round(time.monotonic() - began, 1),
        "logs": str(LOGS_COPY),
    }

    details = {"cancels": [asdict(cancel) for cancel in run.cancels], "dispatches": dispatches}
    report.write_json(verdict.summary, verdict.failures, details)
    with capsys.disabled():
        print("\n" + report.block(verdict.summary, verdict.failures), flush=True)
    assert not verdict.failures, "\n".join(verdict.failures)
