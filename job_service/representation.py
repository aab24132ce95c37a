"""A stored job as the client-facing `Job` message, with its signed output URL."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from job_service.store import JobRow
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.signing import sign_path


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def job_proto(
    row: JobRow, public_url: str, signing_key: bytes, ttl_s: int, now: float | None = None
) -> jobs_pb2.Job:
    job = jobs_pb2.Job(
        id=row.id,
        account_id=row.account_id,
        status=row.status,
        error=row.error,
        webhook=row.webhook,
        created_at=timestamp(row.created_at),
    )
    job.spec.ParseFromString(row.spec)
    if row.finished_at is not None:
        job.finished_at.CopyFrom(timestamp(row.finished_at))
    if row.deleted_at is not None:
        job.deleted_at.CopyFrom(timestamp(row.deleted_at))
    if (
        row.status == jobs_pb2.JOB_STATUS_COMPLETED
        and row.output_key
        and row.output_removed_at is None
    ):
        # The URL expires with the retention period, counted from completion;
        # past it the output is gone for the client (API.md: `output` reads null).
        expires = int((row.finished_at or row.created_at) + ttl_s)
        if (time.time() if now is None else now) < expires:
            job.output_url = public_url + sign_path(signing_key, row.output_key, expires)
    if row.execution_time_ms is not None:
        job.execution_time_ms = row.execution_time_ms
    if row.timings:
        job.timings.update(row.timings)
    if row.credits is not None:
        job.credits = row.credits
    if row.seed is not None:
        job.seed = row.seed
    return job
