"""The public JSON form of a job (API.md "Jobs"), shared by GET and webhooks.

The gateway answers `GET /api/v1/jobs/{id}` with it and job_service POSTs the
same object to webhooks, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any

from lipsync.jobs.v1 import jobs_pb2

MODEL_NAMES = {
    jobs_pb2.MODEL_LIPSYNC_VIDEO: "lipsync-video",
    jobs_pb2.MODEL_LIPSYNC_IMAGE: "lipsync-image",
    jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI: "lipsync-image-multi",
}
MODELS_BY_NAME = {name: model for model, name in MODEL_NAMES.items()}

STATUS_NAMES = {
    jobs_pb2.JOB_STATUS_PROCESSING: "processing",
    jobs_pb2.JOB_STATUS_COMPLETED: "completed",
    jobs_pb2.JOB_STATUS_FAILED: "failed",
    jobs_pb2.JOB_STATUS_CANCELED: "canceled",
}

ORDER_NAMES = {
    jobs_pb2.ORDER_LEFT_RIGHT: "left_right",
    jobs_pb2.ORDER_RIGHT_LEFT: "right_left",
    jobs_pb2.ORDER_MEANWHILE: "meanwhile",
}
ORDERS_BY_NAME = {name: order for order, name in ORDER_NAMES.items()}


def job_to_json(job: jobs_pb2.Job) -> dict[str, Any]:
    """The job object of API.md; field names and meanings are the contract."""
    body: dict[str, Any] = {
        "id": job.id,
        "model": MODEL_NAMES.get(job.model, ""),
        "status": STATUS_NAMES.get(job.status, "processing"),
        "output": job.output_url or None,
        "error": job.error,
        "executionTime": (job.execution_time_ms if job.HasField("execution_time_ms") else None),
        "timings": dict(job.timings) if job.timings else None,
        "credits": job.credits if job.HasField("credits") else None,
        "seed": job.seed if job.HasField("seed") else None,
        "createdAt": job.created_at.ToJsonString() if job.HasField("created_at") else None,
    }
    return body
