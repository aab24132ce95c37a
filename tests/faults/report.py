"""The fault suite's printed block: the figures of one run, in words, for the issue's note.

The same figures, in full, go to bench-report/faults.json (`write_json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[2] / "bench-report" / "faults.json"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _spread(figure: dict[str, Any], unit: str = "s") -> str:
    if not figure.get("jobs"):
        return "no sample"
    return f"p50 {figure['p50']} {unit}, max {figure['max']} {unit} ({figure['jobs']} jobs)"


def block(summary: dict[str, Any], failures: list[str]) -> str:
    jobs, billing, hooks = summary["jobs"], summary["billing"], summary["webhooks"]
    dispatch, cancel, faults = summary["dispatch_latency"], summary["cancel"], summary["faults"]
    statuses = jobs["by_status"]
    free = dispatch["with_a_free_worker_slot"]
    late = faults["service_events_after_a_terminal_one"]
    lines = [
        "=" * 28 + " fault suite " + "=" * 28,
        f"jobs       {jobs['submitted']} submitted ({jobs['with_webhook']} with a webhook,"
        f" {jobs['accounts']} accounts): {_counts(statuses)}",
        f"           failed because: {_counts(jobs['failed_because'])};"
        f" 503 answers retried by clients: {jobs['refused_503_then_retried']}",
        f"faults     {faults['injected']} injected ({faults['worker_kills_mid_render']} worker"
        f" kills mid-render), {faults['restarts_by_supervisor']} restarts"
        f" by the supervisor, {faults['events_replayed']} stored events replayed;"
        f" service events after a job's terminal one: {_counts(late)}",
        f"billing    {billing['captures']} captures ({billing['captured_credits']} credits) for"
        f" {statuses.get('completed', 0)} completed jobs; accounts (granted = balance + captured,"
        f" reserved): "
        + "; ".join(
            f"{a['granted']} = {a['balance']} + {a['captured']}, {a['reserved']}"
            for a in billing["accounts"].values()
        ),
        f"webhooks   {hooks['well_behaved_delivered']}/{hooks['well_behaved_expected']} to"
        f" well-behaved receivers delivered ({hooks['repeat_deliveries']} repeats);"
        f" hanging receiver {hooks['hanging_receiver_attempts']} attempts,"
        f" flaky {hooks['flaky_receiver_attempts']}",
        f"           steady receiver, job end to first attempt: "
        f"{_spread(hooks['steady_first_attempt_delay_s'])}; while job_service or NATS was"
        f" faulted: max {hooks['steady_delay_when_job_service_or_nats_faulted_s']['max']} s",
        f"dispatch   accepted to worker start: p50 {dispatch['p50_ms']} ms, p99"
        f" {dispatch['p99_ms']} ms ({dispatch['jobs']} jobs no fault touched); with a free"
        f" worker slot: p50 {free['p50_ms']} ms, p99 {free['p99_ms']} ms ({free['jobs']} jobs)",
    ]
    if cancel.get("available"):
        lines += [
            f"cancel     {cancel['asked']} asked ({_counts(cancel['by_moment'])}): answers"
            f" {_counts(cancel['answers'])}",
            f"           running job: reads canceled"
            f" {_spread(cancel['running_cancel_to_reads_canceled_s'])}; worker logged the stop"
            f" {_spread(cancel['running_cancel_to_worker_logged_stop_s'])}; last progress"
            f" {_spread(cancel['running_cancel_to_worker_quiet_s'])}",
            f"           canceled jobs a worker started again on a later delivery:"
            f" {cancel['canceled_jobs_started_again']}",
        ]
    else:
        lines.append(f"cancel     MISSING: {cancel['why']}")
    phantoms = summary["no_phantom_jobs"]
    lines.append(
        f"phantoms   {phantoms['phantom_jobs']} jobs without a 202"
        f" ({phantoms['stored_as_job_service_was_killed']} stored as job_service was killed)"
        if phantoms.get("checked")
        else f"phantoms   not checked: {phantoms['why']}"
    )
    outputs = summary["outputs"]
    lines.append(
        f"outputs    {outputs['files']} files; completed jobs without one:"
        f" {outputs['completed_without_file']}; files of jobs that did not complete:"
        f" {_counts(outputs['files_of_jobs_not_completed'])}"
    )
    lines.append(f"run        {summary['run']['total_s']} s; logs in {summary['run']['logs']}")
    lines.append("timeline")
    lines.extend(f"  {entry}" for entry in faults["timeline"])
    lines.append(f"failures   {len(failures)}")
    lines.extend(f"  - {failure}" for failure in failures)
    lines.append("=" * 69)
    return "\n".join(lines)


def write_json(summary: dict[str, Any], failures: list[str], details: dict[str, Any]) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({**summary, "failures": failures, **details}, indent=2, default=str) + "\n"
    )
