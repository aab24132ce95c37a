"""JetStream topology, message ids and connection helpers.

Three streams carry every job:

* `LIPSYNC_JOBS`, a work queue on `lipsync.jobs.requested`: job_service
  publishes one message per job (message id = job id, so a retried publish is
  dropped by the server), inference workers share the durable pull consumer
  `inference` and ack explicitly once the job has a terminal event.
* `LIPSYNC_EVENTS`, a limits stream on `lipsync.events.<job_id>`: workers
  publish what happened; job_service and billing_service each read it through
  their own durable pull consumer, so each sees every event once (and again
  after a crash, which their idempotent handlers absorb).
* `LIPSYNC_ADVISORIES`, a limits stream that keeps the server's announcement
  that a job ran out of deliveries, so job_service's reaper handles it through
  its durable consumer even when it was published while job_service was down.

Every process that touches a stream declares it at start-up; declaring is
idempotent, so start-up order does not matter. Each consumer is declared by
the `PullConsumer` (lipsync_common/consumer.py) that reads it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from lipsync.jobs.v1 import events_pb2
from lipsync_common.config import env_int

log = logging.getLogger(__name__)

JOBS_STREAM = "LIPSYNC_JOBS"
JOBS_SUBJECT = "lipsync.jobs.requested"
EVENTS_STREAM = "LIPSYNC_EVENTS"
EVENTS_SUBJECT_PREFIX = "lipsync.events"
ADVISORIES_STREAM = "LIPSYNC_ADVISORIES"

# How long the server remembers message ids to drop duplicate publishes.
DUPLICATE_WINDOW_S = 15 * 60.0
# Events and advisories are kept for a week so a consumer that was down can catch up.
EVENTS_MAX_AGE_S = 7 * 24 * 3600.0

WORKER_CONSUMER = "inference"
# A worker sends in-progress heartbeats well inside this window during renders.
WORKER_ACK_WAIT_S = 60.0
# A job whose worker crashed this many times is failed by job_service.
WORKER_MAX_DELIVER = 3

JOB_SERVICE_EVENTS = "job-service"
BILLING_SERVICE_EVENTS = "billing-service"
REAPER_CONSUMER = "job-service-reaper"

# Event handlers are idempotent and only fail on a dependency outage, so they
# retry for long; a poison message is terminated by the handler.
_OUTAGE_MAX_DELIVER = 1000


def events_subject(job_id: str) -> str:
    return f"{EVENTS_SUBJECT_PREFIX}.{job_id}"


def max_deliveries_advisory_subject() -> str:
    """Where the server announces a worker message that ran out of deliveries."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{WORKER_CONSUMER}"


def message_id(job_id: str, *what: str | int) -> str:
    """The `Nats-Msg-Id` of a job's message: the job id, then what happened.

    `message_id(job_id)` is the job request; `message_id(job_id, "started", 2)`
    the second attempt's start. The server drops a second publish under the
    same id inside `DUPLICATE_WINDOW_S`, so a retried publish is harmless.
    """
    return ":".join((job_id, *(str(part) for part in what)))


def event_message_id(event: events_pb2.JobEvent) -> str:
    """One message per job and kind of event, except `started`: one per attempt."""
    kind = event.WhichOneof("kind") or ""
    if kind == "started":
        return message_id(event.job_id, kind, event.started.attempt)
    return message_id(event.job_id, kind)


async def publish_event(js: JetStreamContext, event: events_pb2.JobEvent) -> None:
    """Stamp a job event with the current time and publish it, deduplicated."""
    event.occurred_at.GetCurrentTime()
    await js.publish(
        events_subject(event.job_id),
        event.SerializeToString(),
        headers={"Nats-Msg-Id": event_message_id(event)},
        timeout=10,
    )


# The kinds of event that end a job; the first of them in a job's subject decides
# its outcome, for job_service and billing alike.
TERMINAL_KINDS = frozenset({"completed", "failed", "canceled"})
# JetStream's error code for a publish whose expected last sequence did not match.
_WRONG_LAST_SEQUENCE = 10071


class EventRaced(Exception):
    """Another event of the job was stored after the sequence a publish expected."""


@dataclass(frozen=True)
class JobHistory:
    """What the events stream holds of one job."""

    # The stream sequence of the job's latest event; 0 when it has none. A
    # conditional publish (`publish_event_after`) expects it.
    last_seq: int
    # The job's first terminal event: its outcome, for every reader. None while
    # the job is open.
    outcome: events_pb2.JobEvent | None


async def job_history(js: JetStreamContext, job_id: str) -> JobHistory:
    """Read the job's events in order (a job has a handful) for its outcome and last sequence.

    The latest event alone is not enough: an event published again after the
    job's end (a redelivered worker's `started`, a replayed message) would hide
    that end.
    """
    subject = events_subject(job_id)
    seq, last_seq = 1, 0
    outcome: events_pb2.JobEvent | None = None
    while True:
        try:
            stored = await js.get_msg(EVENTS_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return JobHistory(last_seq, outcome)
        last_seq = stored.seq or seq
        if outcome is None:
            event = events_pb2.JobEvent.FromString(stored.data or b"")
            if event.WhichOneof("kind") in TERMINAL_KINDS:
                outcome = event
        seq = last_seq + 1


async def ended_event(js: JetStreamContext, job_id: str) -> events_pb2.JobEvent | None:
    """The job's outcome (its first terminal event), or None while it is open."""
    return (await job_history(js, job_id)).outcome


async def publish_event_after(
    js: JetStreamContext, event: events_pb2.JobEvent, expected_seq: int
) -> None:
    """Publish `event` only if the job's latest event is still at `expected_seq` (0: none).

    `expected_seq` comes from `job_history`, read just before.

    Raises EventRaced otherwise. This is how job_service publishes `canceled`
    without ever landing it behind a worker's `completed`.
    """
    event.occurred_at.GetCurrentTime()
    try:
        await js.publish(
            events_subject(event.job_id),
            event.SerializeToString(),
            headers={
                "Nats-Msg-Id": event_message_id(event),
                "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
            },
            timeout=10,
        )
    except BadRequestError as error:
        if error.err_code == _WRONG_LAST_SEQUENCE:
            raise EventRaced(event.job_id) from None
        raise


async def connect(url: str, name: str) -> tuple[Client, JetStreamContext]:
    """Connect with reconnects forever: a NATS restart must not kill a service."""
    nc = await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )
    return nc, nc.jetstream()


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        # The stream exists with an older configuration: bring it up to date.
        await js.update_stream(config)


async def ensure_streams(js: JetStreamContext) -> None:
    # 1 on a single server; 3 on a JetStream cluster, so losing a server loses nothing.
    replicas = env_int("LIPSYNC_JETSTREAM_REPLICAS", 1)
    await _ensure_stream(
        js,
        StreamConfig(
            name=JOBS_STREAM,
            subjects=[JOBS_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENTS_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=EVENTS_MAX_AGE_S,
            num_replicas=replicas,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=ADVISORIES_STREAM,
            subjects=[max_deliveries_advisory_subject()],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=EVENTS_MAX_AGE_S,
            num_replicas=replicas,
        ),
    )


def worker_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=WORKER_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=WORKER_ACK_WAIT_S,
        max_deliver=WORKER_MAX_DELIVER,
        filter_subject=JOBS_SUBJECT,
    )


async def ensure_worker_consumer(js: JetStreamContext) -> None:
    """Declare the workers' consumer, for a process that reads the queue without a worker."""
    await js.add_consumer(JOBS_STREAM, worker_consumer_config())


def events_consumer_config(durable: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=_OUTAGE_MAX_DELIVER,
        filter_subject=f"{EVENTS_SUBJECT_PREFIX}.>",
    )


def reaper_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=REAPER_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=_OUTAGE_MAX_DELIVER,
        filter_subject=max_deliveries_advisory_subject(),
    )
