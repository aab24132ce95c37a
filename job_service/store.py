"""Job records in the job service's database (SQLite or PostgreSQL).

A job row is written once at creation; afterwards only its state moves, and
only forward (see `state.py`): the terminal UPDATE is guarded by
`status = processing`, so a redelivered event can never overwrite the outcome.
`published_at` is the outbox flag: a job whose publish to JetStream failed is
published again by the outbox loop.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.db import Connection, Database, Row

MIGRATIONS = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        model INTEGER NOT NULL,
        status INTEGER NOT NULL,
        form_state BLOB NOT NULL,
        webhook TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT,
        request_fingerprint TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        published_at REAL,
        finished_at REAL,
        output_key TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        execution_time_ms INTEGER,
        timings TEXT,
        credits INTEGER,
        seed INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        webhook_delivered_at REAL,
        webhook_attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (account_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_unpublished ON jobs (created_at) WHERE published_at IS NULL;
    CREATE INDEX jobs_webhook_due ON jobs (finished_at)
        WHERE finished_at IS NOT NULL AND webhook != '' AND webhook_delivered_at IS NULL
    """,
    # Webhook retries back off (job_service.webhooks); the cap on jobs in
    # processing counts an account's processing jobs at every creation.
    """
    ALTER TABLE jobs ADD COLUMN webhook_next_attempt_at REAL;
    CREATE INDEX jobs_processing_by_account ON jobs (account_id, status)
    """,
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
    model: jobs_pb2.Model.ValueType
    status: jobs_pb2.JobStatus.ValueType
    form_state: bytes
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

    @classmethod
    def from_row(cls, row: Row) -> JobRow:
        return cls(
            id=row["id"],
            account_id=row["account_id"],
            model=jobs_pb2.Model.ValueType(row["model"]),
            status=jobs_pb2.JobStatus.ValueType(row["status"]),
            form_state=row["form_state"],
            webhook=row["webhook"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            output_key=row["output_key"],
            error=row["error"],
            execution_time_ms=row["execution_time_ms"],
            timings=json.loads(row["timings"]) if row["timings"] else {},
            credits=row["credits"],
            seed=row["seed"],
            webhook_attempts=row["webhook_attempts"],
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
        model: int,
        form_state: bytes,
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

        def create(conn: Connection) -> tuple[JobRow, bool]:
            if idempotency_key:
                row = conn.execute(
                    "SELECT * FROM jobs WHERE account_id = ? AND idempotency_key = ?",
                    (account_id, idempotency_key),
                ).fetchone()
                if row is not None:
                    if row["request_fingerprint"] != fingerprint:
                        raise IdempotencyConflict(idempotency_key)
                    return JobRow.from_row(row), False
            if max_processing > 0:
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE account_id = ? AND status = ?",
                    (account_id, PROCESSING),
                ).fetchone()
                if count >= max_processing:
                    raise TooManyProcessing(account_id)
            job_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO jobs (id, account_id, model, status, form_state, webhook,"
                " idempotency_key, request_fingerprint, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    account_id,
                    model,
                    PROCESSING,
                    form_state,
                    webhook,
                    idempotency_key or None,
                    fingerprint,
                    time.time(),
                ),
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return JobRow.from_row(row), True

        return await self.db.transaction(create)

    async def get(self, job_id: str) -> JobRow | None:
        def get(conn: Connection) -> JobRow | None:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return JobRow.from_row(row) if row is not None else None

        return await self.db.run(get)

    async def mark_published(self, job_id: str) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET published_at = ? WHERE id = ? AND published_at IS NULL",
                (time.time(), job_id),
            )
        )

    async def unpublished(self, older_than_s: float) -> list[JobRow]:
        cutoff = time.time() - older_than_s

        def unpublished(conn: Connection) -> list[JobRow]:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE published_at IS NULL AND created_at < ?"
                " AND status = ? ORDER BY created_at LIMIT 100",
                (cutoff, PROCESSING),
            ).fetchall()
            return [JobRow.from_row(r) for r in rows]

        return await self.db.run(unpublished)

    async def record_attempt(self, job_id: str, attempt: int) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET attempts = GREATEST(attempts, ?) WHERE id = ?", (attempt, job_id)
            )
        )

    async def finish(self, job_id: str, outcome: Outcome) -> JobRow | None:
        """Move a processing job to its terminal state, once.

        Returns the finished job if this call moved it, None if it was already
        terminal (a duplicate event) or unknown.
        """

        def finish(conn: Connection) -> JobRow | None:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, output_key = ?, error = ?,"
                " execution_time_ms = ?, timings = ?, credits = ?, seed = COALESCE(?, seed)"
                " WHERE id = ? AND status = ?",
                (
                    outcome.status,
                    time.time(),
                    outcome.output_key,
                    outcome.error,
                    outcome.execution_time_ms,
                    json.dumps(outcome.timings) if outcome.timings else None,
                    outcome.credits,
                    outcome.seed,
                    job_id,
                    PROCESSING,
                ),
            )
            if cursor.rowcount != 1:
                return None
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return JobRow.from_row(row)

        return await self.db.transaction(finish)

    async def webhooks_due(
        self, max_attempts: int, limit: int = 100, now: float | None = None
    ) -> list[JobRow]:
        """Undelivered webhooks with attempts left whose next attempt time has come."""
        now = time.time() if now is None else now

        def due(conn: Connection) -> list[JobRow]:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE finished_at IS NOT NULL AND webhook != ''"
                " AND webhook_delivered_at IS NULL AND webhook_attempts < ?"
                " AND (webhook_next_attempt_at IS NULL OR webhook_next_attempt_at <= ?)"
                " ORDER BY finished_at LIMIT ?",
                (max_attempts, now, limit),
            ).fetchall()
            return [JobRow.from_row(r) for r in rows]

        return await self.db.run(due)

    async def record_webhook_attempt(
        self, job_id: str, delivered: bool, next_attempt_at: float | None = None
    ) -> None:
        """Count an attempt; a failed one is retried no sooner than `next_attempt_at`."""
        await self.db.run(
            lambda conn: conn.execute(
                "UPDATE jobs SET webhook_attempts = webhook_attempts + 1,"
                " webhook_delivered_at = COALESCE(?, webhook_delivered_at),"
                " webhook_next_attempt_at = ? WHERE id = ?",
                (time.time() if delivered else None, next_attempt_at, job_id),
            )
        )
