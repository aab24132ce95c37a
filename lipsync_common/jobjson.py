"""The public JSON form of a job (API.md "Jobs") and of its webhook deliveries.

The gateway answers `GET /api/v1/jobs/{id}` with it and job_service POSTs the
same object to webhooks, so the two can never drift apart; the gateway and
`lipsyncctl` print a job's deliveries with `deliveries_to_json`.
"""

from __future__ import annotations

from typing import Any

from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import STAGE_NAMES, STATUS_NAMES, model_name

_PROCESSING = STATUS_NAMES[jobs_pb2.JOB_STATUS_PROCESSING]
_QUEUED = STAGE_NAMES[jobs_pb2.JOB_STAGE_QUEUED]


def progress_to_json(job: jobs_pb2.Job) -> dict[str, Any] | None:
    """API.md "Progress": set while processing (queued until a worker reports), else null."""
    if job.status not in (jobs_pb2.JOB_STATUS_PROCESSING, jobs_pb2.JOB_STATUS_UNSPECIFIED):
        return None
    progress = job.progress
    return {
        "stage": STAGE_NAMES.get(progress.stage, _QUEUED),
        "percent": max(0, min(100, progress.percent)),
        "etaSeconds": progress.eta_seconds if progress.HasField("eta_seconds") else None,
    }


def job_to_json(job: jobs_pb2.Job) -> dict[str, Any]:
    """The job object of API.md; field names and meanings are the contract."""
    return {
        "id": job.id,
        "model": model_name(job.spec),
        "status": STATUS_NAMES.get(job.status, _PROCESSING),
        "output": job.output_url or None,
        "error": job.error,
        "executionTime": (job.execution_time_ms if job.HasField("execution_time_ms") else None),
        "timings": dict(job.timings) if job.timings else None,
        "credits": job.credits if job.HasField("credits") else None,
        "seed": job.seed if job.HasField("seed") else None,
        "createdAt": job.created_at.ToJsonString() if job.HasField("created_at") else None,
        "progress": progress_to_json(job),
        "deletedAt": job.deleted_at.ToJsonString() if job.HasField("deleted_at") else None,
    }


def _time(message: Any, name: str) -> str | None:
    """An RFC 3339 UTC time (`...Z`), or None when the field is unset."""
    return getattr(message, name).ToJsonString() if message.HasField(name) else None


def deliveries_to_json(response: jobs_pb2.ListWebhookDeliveriesResponse) -> dict[str, Any]:
    """`GET /api/v1/jobs/{id}/webhook-deliveries` (API.md "Job control")."""
    return {
        "data": [
            {
                "attempt": delivery.attempt,
                "at": _time(delivery, "at"),
                "statusCode": delivery.status_code if delivery.HasField("status_code") else None,
                "latencyMs": delivery.latency_ms if delivery.HasField("latency_ms") else None,
                "error": delivery.error,
                "nextAttemptAt": _time(delivery, "next_attempt_at"),
            }
            for delivery in response.deliveries
        ],
        "delivered": response.delivered,
    }
