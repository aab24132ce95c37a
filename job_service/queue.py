"""Hands jobs to the inference workers over the JetStream work queue."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

from job_service.store import JobRow
from lipsync.jobs.v1 import events_pb2
from lipsync_common.jetstream import JOBS_SUBJECT, message_id


async def publish_job(js: JetStreamContext, row: JobRow) -> None:
    """Publish a job request; the message id makes a repeated publish a no-op."""
    created = Timestamp()
    created.FromNanoseconds(int(row.created_at * 1e9))
    request = events_pb2.JobRequested(
        job_id=row.id,
        account_id=row.account_id,
        created_at=created,
    )
    request.spec.ParseFromString(row.spec)
    await js.publish(
        JOBS_SUBJECT,
        request.SerializeToString(),
        headers={"Nats-Msg-Id": message_id(row.id)},
        timeout=5,
    )
