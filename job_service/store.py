"""Job records in the job service's database (SQLite or PostgreSQL).

A job row is written once at creation; afterwards only its state moves, and
only forward (see `state.py`): the terminal UPDATE is guarded by
`status = processing`, so a redelivered event can never overwrite the outcome.
`published_at` is the outbox flag: a job whose publish to JetStream failed is
published again by the outbox loop.

A job's model is stored as its REST name (`lipsync-image`), so listings can
filter by it; its `JobSpec` is stored serialized.

Webhook deliveries are leased: a sweep claims the due rows it will deliver
(`claim_webhooks`, one statement that sets `webhook_lease_owner` and
`webhook_lease_until`), and only that owner's `record_webhook_attempt` counts
and releases the lease. Several job_service replicas sharing the database
therefore each make a given attempt once; a replica that dies mid-delivery
leaves its rows to whoever sweeps after the lease runs out.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    LargeBinary,
    MetaData,
    Row,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.db import Database
from lipsync_common.migrations import Migration, MigrationStep

_V1_JOBS = """
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        model BIGINT NOT NULL,
        status BIGINT NOT NULL,
        form_state {blob} NOT NULL,
        webhook TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT,
        request_fingerprint TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL,
        published_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        output_key TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        execution_time_ms BIGINT,
        timings TEXT,
        credits BIGINT,
        seed BIGINT,
        attempts BIGINT NOT NULL DEFAULT 0,
        webhook_delivered_at DOUBLE PRECISION,
        webhook_attempts BIGINT NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (account_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_unpublished ON jobs (created_at) WHERE published_at IS NULL;
    CREATE INDEX jobs_webhook_due ON jobs (finished_at)
        WHERE finished_at IS NOT NULL AND webhook != '' AND webhook_delivered_at IS NULL
"""

_V6_JOB_CONTROL = """
    ALTER TABLE jobs ADD COLUMN deleted_at DOUBLE PRECISION;
    ALTER TABLE jobs ADD COLUMN output_removed_at DOUBLE PRECISION;
    CREATE INDEX jobs_by_account ON jobs (account_id, created_at, id);
    CREATE INDEX jobs_output_kept ON jobs (finished_at)
        WHERE output_key != '' AND output_removed_at IS NULL;
    CREATE TABLE webhook_deliveries (
        id {serial},
        job_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        status_code BIGINT,
        latency_ms BIGINT,
        error TEXT NOT NULL DEFAULT '',
        next_attempt_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id, attempt)
"""

MIGRATIONS: list[MigrationStep] = [
    Migration(
        sqlite="CREATE TABLE jobs (" + _V1_JOBS.replace("{blob}", "BLOB"),
        postgres="CREATE TABLE jobs (" + _V1_JOBS.replace("{blob}", "BYTEA"),
    ),
    # Webhook retries back off (job_service.webhooks); the cap on jobs in
    # processing counts an account's processing jobs at every creation.
    """
    ALTER TABLE jobs ADD COLUMN webhook_next_attempt_at DOUBLE PRECISION;
    CREATE INDEX jobs_processing_by_account ON jobs (account_id, status)
    """,
    # The typed job contract: the model by REST name and the serialized JobSpec
    # replace the model enum and FormState. Rows from before keep an empty spec
    # (pre-launch data, not carried over).
    Migration(
        sqlite="""
        ALTER TABLE jobs DROP COLUMN model;
        ALTER TABLE jobs DROP COLUMN form_state;
        ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN spec BLOB NOT NULL DEFAULT x''
        """,
        postgres="""
        ALTER TABLE jobs DROP COLUMN model;
        ALTER TABLE jobs DROP COLUMN form_state;
        ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN spec BYTEA NOT NULL DEFAULT ''
        """,
    ),
    # Leases on webhook deliveries, so replicas never deliver one attempt twice.
    """
    ALTER TABLE jobs ADD COLUMN webhook_lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN webhook_lease_until DOUBLE PRECISION
    """,
    # Deliveries that stopped for good (410 Gone, a refused URL), and why the
    # last attempt failed.
    """
    ALTER TABLE jobs ADD COLUMN webhook_gave_up_at DOUBLE PRECISION;
    ALTER TABLE jobs ADD COLUMN webhook_last_error TEXT NOT NULL DEFAULT ''
    """,
    # Job control: listings newest first, deleted outputs, expired outputs
    # removed, and every webhook attempt kept for the customer to read.
    Migration(
        sqlite=_V6_JOB_CONTROL.replace("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres=_V6_JOB_CONTROL.replace("{serial}", "BIGSERIAL PRIMARY KEY"),
    ),
]

# The table as the queries see it (the migrations above create it).
metadata = MetaData()
jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("status", BigInteger, nullable=False),
    Column("spec", LargeBinary, nullable=False),
    Column("webhook", Text, nullable=False),
    Column("idempotency_key", Text),
    Column("request_fingerprint", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("published_at", Double),
    Column("finished_at", Double),
    Column("output_key", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("execution_time_ms", BigInteger),
    Column("timings", Text),
    Column("credits", BigInteger),
    Column("seed", BigInteger),
    Column("attempts", BigInteger, nullable=False),
    Column("webhook_delivered_at", Double),
    Column("webhook_attempts", BigInteger, nullable=False),
    Column("webhook_next_attempt_at", Double),
    Column("webhook_lease_owner", Text),
    Column("webhook_lease_until", Double),
    Column("webhook_gave_up_at", Double),
    Column("webhook_last_error", Text, nullable=False),
    Column("deleted_at", Double),
    Column("output_removed_at", Double),
)
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job_id", Text, nullable=False),
    Column("attempt", BigInteger, nullable=False),
    Column("at", Double, nullable=False),
    Column("status_code", BigInteger),
    Column("latency_ms", BigInteger),
    Column("error", Text, nullable=False),
    Column("next_attempt_at", Double),
)

# How long a sweep owns the deliveries it claimed: far longer than one
# delivery takes (an HTTP timeout of seconds), short enough that the rows of a
# replica that died are picked up again soon.
WEBHOOK_LEASE_S = 300.0

# The columns a JobRow is read from, in its fields' order.
_ROW = [
    jobs.c[name]
    for name in (
        "id",
        "account_id",
        "model",
        "status",
        "spec",
        "webhook",
        "created_at",
        "finished_at",
        "output_key",
        "error",
        "execution_time_ms",
        "timings",
        "credits",
        "seed",
        "webhook_attempts",
        "deleted_at",
        "output_removed_at",
        "webhook_delivered_at",
    )
]

PROCESSING = jobs_pb2.JOB_STATUS_PROCESSING


class IdempotencyConflict(Exception):
    """The idempotency key was used before with a different request."""


class TooManyProcessing(Exception):
    """The account already has as many jobs in processing as its cap allows."""


@dataclass(frozen=True)
class JobRow:
    """A job as stored; `to_proto` turns it into the client-facing message."""

    id: str
    account_id: str
    # The REST name of the model, e.g. "lipsync-image".
    model: str
    status: jobs_pb2.JobStatus.ValueType
    # The JobSpec, serialized with deterministic=True.
    spec: bytes
    webhook: str
    created_at: float
    finished_at: float | None
    output_key: str
    error: str
    execution_time_ms: int | None
    timings: dict[str, int]
    credits: int | None
    seed: int | None
    # Failed webhook deliveries so far; sets the delay before the next one.
    webhook_attempts: int = 0
    # When the customer deleted the job's output.
    deleted_at: float | None = None
    # When the output file was removed (deleted, or past its retention).
    output_removed_at: float | None = None
    webhook_delivered_at: float | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> JobRow:
        """A row whose first columns are `_ROW`'s; read by position, which is faster."""
        (
            job_id,
            account_id,
            model,
            status,
            spec,
            webhook,
            created_at,
            finished_at,
            output_key,
            error,
            execution_time_ms,
            timings,
            credits,
            seed,
            webhook_attempts,
            deleted_at,
            output_removed_at,
            webhook_delivered_at,
        ) = row[: len(_ROW)]
        return cls(
            id=job_id,
            account_id=account_id,
            model=model,
            status=jobs_pb2.JobStatus.ValueType(status),
            spec=bytes(spec),
            webhook=webhook,
            created_at=created_at,
            finished_at=finished_at,
            output_key=output_key,
            error=error,
            execution_time_ms=execution_time_ms,
            timings=json.loads(timings) if timings else {},
            credits=credits,
            seed=seed,
            webhook_attempts=webhook_attempts,
            deleted_at=deleted_at,
            output_removed_at=output_removed_at,
            webhook_delivered_at=webhook_delivered_at,
        )

    @property
    def terminal(self) -> bool:
        return self.status != PROCESSING


@dataclass(frozen=True)
class Outcome:
    """The terminal state a worker reported."""

    status: int
    output_key: str = ""
    error: str = ""
    execution_time_ms: int | None = None
    timings: dict[str, int] | None = None
    credits: int | None = None
    seed: int | None = None


# The statements are built once, with named parameters: building one costs
# more than running it on SQLite.
_GET = select(*_ROW).where(jobs.c.id == bindparam("job_id"))
_BY_IDEMPOTENCY_KEY: Select[Any] = select(*_ROW, jobs.c.request_fingerprint).where(
    jobs.c.account_id == bindparam("account"), jobs.c.idempotency_key == bindparam("key")
)
_COUNT_PROCESSING = (
    select(func.count())
    .select_from(jobs)
    .where(jobs.c.account_id == bindparam("account"), jobs.c.status == PROCESSING)
)
_INSERT = insert(jobs).returning(*_ROW)
_MARK_PUBLISHED = update(jobs).where(
    jobs.c.id.in_(bindparam("job_ids", expanding=True)), jobs.c.published_at.is_(None)
)
_UNPUBLISHED = (
    select(*_ROW)
    .where(
        jobs.c.published_at.is_(None),
        jobs.c.created_at < bindparam("cutoff"),
        jobs.c.status == PROCESSING,
    )
    .order_by(jobs.c.created_at)
    .limit(100)
)
_RECORD_ATTEMPT = update(jobs).where(
    jobs.c.id == bindparam("job_id"), jobs.c.attempts < bindparam("attempt")
)
_FINISH = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"), jobs.c.status == PROCESSING)
    .values(seed=func.coalesce(bindparam("new_seed", type_=BigInteger), jobs.c.seed))
    .returning(*_ROW)
)
_DUE_NOW = and_(
    jobs.c.finished_at.is_not(None),
    jobs.c.webhook != "",
    jobs.c.webhook_delivered_at.is_(None),
    jobs.c.webhook_gave_up_at.is_(None),
    jobs.c.webhook_attempts < bindparam("max_attempts"),
    or_(
        jobs.c.webhook_next_attempt_at.is_(None),
        jobs.c.webhook_next_attempt_at <= bindparam("now"),
    ),
    # Unleased, or the lease of a sweep that never reported back ran out.
    or_(jobs.c.webhook_lease_until.is_(None), jobs.c.webhook_lease_until <= bindparam("now")),
)
# The due deliveries ranked within their account, oldest first, so that a claim
# takes at most `per_account` of any one account: an account with thousands
# of due deliveries to a receiver that hangs gets its share of the senders,
# not all of them. Accounts whose share is already in flight are skipped.
_RANKED_DUE = (
    select(
        jobs.c.id,
        jobs.c.finished_at,
        func.row_number()
        .over(partition_by=jobs.c.account_id, order_by=(jobs.c.finished_at, jobs.c.id))
        .label("rank"),
    )
    .where(_DUE_NOW, jobs.c.account_id.not_in(bindparam("busy_accounts", expanding=True)))
    .subquery()
)
_DUE = (
    select(_RANKED_DUE.c.id)
    .where(_RANKED_DUE.c.rank <= bindparam("per_account"))
    .order_by(_RANKED_DUE.c.finished_at, _RANKED_DUE.c.id)
    .limit(bindparam("limit"))
)
# The due conditions again on the rows themselves: between the ranking and the
# update another sweep may have taken a row (PostgreSQL's SERIALIZABLE would
# also refuse such a claim, and db.transaction runs it again).
_CLAIM = update(jobs).where(jobs.c.id.in_(_DUE), _DUE_NOW).returning(*_ROW)
_RECORD_WEBHOOK_ATTEMPT = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"), jobs.c.webhook_lease_owner == bindparam("owner"))
    .values(
        webhook_attempts=jobs.c.webhook_attempts + 1,
        webhook_lease_owner=None,
        webhook_lease_until=None,
    )
)


_NEXT_DELIVERY_ATTEMPT = select(func.coalesce(func.max(webhook_deliveries.c.attempt), 0) + 1).where(
    webhook_deliveries.c.job_id == bindparam("job_id")
)
_INSERT_DELIVERY = insert(webhook_deliveries)
_DELIVERIES = (
    select(
        webhook_deliveries.c.attempt,
        webhook_deliveries.c.at,
        webhook_deliveries.c.status_code,
        webhook_deliveries.c.latency_ms,
        webhook_deliveries.c.error,
        webhook_deliveries.c.next_attempt_at,
    )
    .where(webhook_deliveries.c.job_id == bindparam("job_id"))
    .order_by(webhook_deliveries.c.attempt)
)
_REDELIVER = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("job_id"),
        jobs.c.webhook != "",
        jobs.c.status != PROCESSING,
    )
    .values(
        webhook_delivered_at=None,
        webhook_gave_up_at=None,
        webhook_attempts=0,
        webhook_next_attempt_at=None,
        webhook_lease_owner=None,
        webhook_lease_until=None,
    )
)
_REMOVE_OUTPUT = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"), jobs.c.status != PROCESSING)
    .values(
        deleted_at=func.coalesce(jobs.c.deleted_at, bindparam("now")),
        output_removed_at=func.coalesce(jobs.c.output_removed_at, bindparam("now")),
    )
    .returning(*_ROW)
)
_OUTPUTS_PAST = (
    select(jobs.c.id, jobs.c.output_key)
    .where(
        jobs.c.output_key != "",
        jobs.c.output_removed_at.is_(None),
        jobs.c.finished_at < bindparam("cutoff"),
    )
    .order_by(jobs.c.finished_at)
    .limit(bindparam("limit"))
)
_OUTPUT_REMOVED = update(jobs).where(
    jobs.c.id.in_(bindparam("job_ids", expanding=True)), jobs.c.output_removed_at.is_(None)
)


@dataclass(frozen=True)
class Cursor:
    """Where a page of a listing starts: below this (created_at, id), newest first."""

    created_at: float
    job_id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at, self.job_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ValueError for anything `encode` did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            created_at, job_id = json.loads(raw)
        except (ValueError, TypeError, binascii.Error) as error:
            raise ValueError("not a cursor") from error
        if not isinstance(created_at, float | int) or not isinstance(job_id, str):
            raise ValueError("not a cursor")
        return cls(float(created_at), job_id)


@dataclass(frozen=True)
class Delivery:
    """One recorded webhook attempt."""

    attempt: int
    at: float
    status_code: int | None
    latency_ms: int | None
    error: str
    next_attempt_at: float | None


def _get(conn: Connection, job_id: str) -> JobRow | None:
    row = conn.execute(_GET, {"job_id": job_id}).first()
    return None if row is None else JobRow.from_row(row)


class JobStore:
    def __init__(self, url: str) -> None:
        self.db = Database(url, MIGRATIONS)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def create(
        self,
        account_id: str,
        model: str,
        spec: bytes,
        webhook: str,
        idempotency_key: str,
        fingerprint: str,
        max_processing: int = 0,
    ) -> tuple[JobRow, bool]:
        """Insert a job, or return the one an idempotency key already names.

        Returns the job and whether it is new. With `max_processing` > 0, a new
        job beyond that many in processing raises TooManyProcessing; the count
        and the insert share one transaction, so concurrent creations cannot
        overshoot the cap.
        """
        values = {
            "account_id": account_id,
            "model": model,
            "status": PROCESSING,
            "spec": spec,
            "webhook": webhook,
            "idempotency_key": idempotency_key or None,
            "request_fingerprint": fingerprint,
            "output_key": "",
            "error": "",
            "attempts": 0,
            "webhook_attempts": 0,
        }

        def create(conn: Connection) -> tuple[JobRow, bool]:
            if idempotency_key:
                found = conn.execute(
                    _BY_IDEMPOTENCY_KEY, {"account": account_id, "key": idempotency_key}
                ).first()
                if found is not None:
                    if found.request_fingerprint != fingerprint:
                        raise IdempotencyConflict(idempotency_key)
                    return JobRow.from_row(found), False
            if max_processing > 0:
                count = conn.execute(_COUNT_PROCESSING, {"account": account_id}).scalar_one()
                if count >= max_processing:
                    raise TooManyProcessing(account_id)
            row = conn.execute(
                _INSERT, {**values, "id": str(uuid.uuid4()), "created_at": time.time()}
            ).one()
            return JobRow.from_row(row), True

        return await self.db.transaction(create)

    async def replay(self, account_id: str, key: str, fingerprint: str) -> JobRow | None:
        """The job an account created with this idempotency key, if any.

        Raises IdempotencyConflict when the key was used with another request.
        """

        def find(conn: Connection) -> JobRow | None:
            found = conn.execute(_BY_IDEMPOTENCY_KEY, {"account": account_id, "key": key}).first()
            if found is None:
                return None
            if found.request_fingerprint != fingerprint:
                raise IdempotencyConflict(key)
            return JobRow.from_row(found)

        return await self.db.run(find)

    async def get(self, job_id: str) -> JobRow | None:
        return await self.db.run(lambda conn: _get(conn, job_id))

    async def list_jobs(
        self,
        account_id: str,
        limit: int,
        status: int | None = None,
        model: str = "",
        after: Cursor | None = None,
    ) -> tuple[list[JobRow], Cursor | None]:
        """A page of an account's jobs, newest first, and the cursor of the next page."""
        query = select(*_ROW).where(jobs.c.account_id == account_id)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if model:
            query = query.where(jobs.c.model == model)
        if after is not None:
            query = query.where(
                or_(
                    jobs.c.created_at < after.created_at,
                    and_(jobs.c.created_at == after.created_at, jobs.c.id < after.job_id),
                )
            )
        # One more than asked says whether another page follows.
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        rows = await self.db.run(lambda conn: [JobRow.from_row(r) for r in conn.execute(query)])
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], Cursor(last.created_at, last.id)

    async def remove_output(self, job_id: str, now: float | None = None) -> JobRow | None:
        """Mark an ended job deleted and its output removed (the first time is kept).

        Returns the job, or None when it is unknown or still processing.
        """
        params = {"job_id": job_id, "now": time.time() if now is None else now}

        def remove(conn: Connection) -> JobRow | None:
            row = conn.execute(_REMOVE_OUTPUT, params).first()
            return None if row is None else JobRow.from_row(row)

        return await self.db.transaction(remove)

    async def outputs_past(self, cutoff: float, limit: int = 500) -> list[tuple[str, str]]:
        """(job id, output key) of outputs kept from jobs that finished before `cutoff`."""
        params = {"cutoff": cutoff, "limit": limit}
        return await self.db.run(
            lambda conn: [(r.id, r.output_key) for r in conn.execute(_OUTPUTS_PAST, params)]
        )

    async def mark_outputs_removed(self, job_ids: list[str]) -> None:
        params = {"job_ids": job_ids, "output_removed_at": time.time()}
        await self.db.run(lambda conn: conn.execute(_OUTPUT_REMOVED, params))

    async def webhook_deliveries(self, job_id: str) -> list[Delivery]:
        """Every recorded attempt of the job's webhook, oldest first."""
        return await self.db.run(
            lambda conn: [
                Delivery(
                    attempt=r.attempt,
                    at=r.at,
                    status_code=r.status_code,
                    latency_ms=r.latency_ms,
                    error=r.error,
                    next_attempt_at=r.next_attempt_at,
                )
                for r in conn.execute(_DELIVERIES, {"job_id": job_id})
            ]
        )

    async def redeliver(self, job_id: str) -> bool:
        """Make an ended job's webhook due now, as if it had never been tried.

        Delivered or given up, it starts again: the attempt count and the back
        off restart, the history stays. False for a job without a webhook or
        still processing.
        """
        return await self.db.run(
            lambda conn: conn.execute(_REDELIVER, {"job_id": job_id}).rowcount == 1
        )

    async def mark_published(self, job_ids: list[str]) -> None:
        """Set the outbox flag of jobs handed to JetStream, in one statement."""
        params = {"job_ids": job_ids, "published_at": time.time()}
        await self.db.run(lambda conn: conn.execute(_MARK_PUBLISHED, params))

    async def unpublished(self, older_than_s: float) -> list[JobRow]:
        params = {"cutoff": time.time() - older_than_s}
        return await self.db.run(
            lambda conn: [JobRow.from_row(r) for r in conn.execute(_UNPUBLISHED, params)]
        )

    async def record_attempt(self, job_id: str, attempt: int) -> None:
        """Note a worker's delivery attempt; the count only grows."""
        params = {"job_id": job_id, "attempt": attempt, "attempts": attempt}
        await self.db.run(lambda conn: conn.execute(_RECORD_ATTEMPT, params))

    async def finish(self, job_id: str, outcome: Outcome) -> JobRow | None:
        """Move a processing job to its terminal state, once.

        Returns the finished job if this call moved it, None if it was already
        terminal (a duplicate event) or unknown.
        """
        params = {
            "job_id": job_id,
            "status": outcome.status,
            "finished_at": time.time(),
            "output_key": outcome.output_key,
            "error": outcome.error,
            "execution_time_ms": outcome.execution_time_ms,
            "timings": json.dumps(outcome.timings) if outcome.timings else None,
            "credits": outcome.credits,
            "new_seed": outcome.seed,
        }

        def finish(conn: Connection) -> JobRow | None:
            row = conn.execute(_FINISH, params).first()
            return None if row is None else JobRow.from_row(row)

        return await self.db.transaction(finish)

    async def claim_webhooks(
        self,
        owner: str,
        max_attempts: int,
        limit: int = 100,
        now: float | None = None,
        lease_s: float = WEBHOOK_LEASE_S,
        per_account: int = 100,
        busy_accounts: Collection[str] = (),
    ) -> list[JobRow]:
        """Lease to `owner` the due webhooks no one holds, and return them, oldest first.

        Due: undelivered, not given up, attempts left, next attempt time come.
        At most `per_account` of one account are taken, none of
        `busy_accounts`. One UPDATE claims them, in a transaction (SQLite:
        under the write lock; PostgreSQL: SERIALIZABLE, retried on a
        conflict), so no row is claimed by two sweeps while its lease runs.
        """
        now = time.time() if now is None else now
        params = {
            "max_attempts": max_attempts,
            "now": now,
            "limit": limit,
            "per_account": per_account,
            "busy_accounts": list(busy_accounts),
            "webhook_lease_owner": owner,
            "webhook_lease_until": now + lease_s,
        }

        def claim(conn: Connection) -> list[JobRow]:
            rows = [JobRow.from_row(r) for r in conn.execute(_CLAIM, params)]
            return sorted(rows, key=lambda row: (row.finished_at or 0.0, row.id))

        return await self.db.transaction(claim)

    async def record_webhook_attempt(
        self,
        job_id: str,
        owner: str,
        delivered: bool,
        next_attempt_at: float | None = None,
        error: str = "",
        give_up: bool = False,
        status_code: int | None = None,
        latency_ms: int | None = None,
        at: float | None = None,
    ) -> bool:
        """Count `owner`'s attempt and release its lease; a failed one is retried no sooner
        than `next_attempt_at`, or never with `give_up`. `error` says why it failed.
        The attempt joins the job's delivery history (`webhook_deliveries`), with
        the receiver's status and latency when it answered.

        False, and nothing recorded, when `owner` does not hold the lease (it ran
        out and another sweep took the row).
        """
        at = time.time() if at is None else at
        params: dict[str, Any] = {
            "job_id": job_id,
            "owner": owner,
            "webhook_next_attempt_at": next_attempt_at,
            "webhook_last_error": error,
        }
        if delivered:
            params["webhook_delivered_at"] = at
        if give_up:
            params["webhook_gave_up_at"] = at
        history = {
            "job_id": job_id,
            "at": at,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "error": error,
            "next_attempt_at": next_attempt_at,
        }

        def record(conn: Connection) -> bool:
            if conn.execute(_RECORD_WEBHOOK_ATTEMPT, params).rowcount != 1:
                return False
            attempt = conn.execute(_NEXT_DELIVERY_ATTEMPT, {"job_id": job_id}).scalar_one()
            conn.execute(_INSERT_DELIVERY, {**history, "attempt": attempt})
            return True

        return await self.db.transaction(record)
