"""Typed views of the API's JSON objects (API.md), each keeping the raw dict too.

Field names are Python's (`execution_time`), values the contract's
(`executionTime` is milliseconds). The API may add fields; they stay
reachable in `raw` without a new release of this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Model = Literal["lipsync-video", "lipsync-image", "lipsync-image-multi"]
Status = Literal["processing", "completed", "failed", "canceled"]
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Progress:
    """A processing job's `progress`: stage, 0-100 percent that never goes down, ETA or None."""

    stage: str
    percent: int
    eta_seconds: int | None

    @classmethod
    def from_json(cls, data: Any) -> Progress | None:
        if not isinstance(data, dict):
            return None
        return cls(
            stage=str(data.get("stage") or "queued"),
            percent=_int_or_none(data.get("percent")) or 0,
            eta_seconds=_int_or_none(data.get("etaSeconds")),
        )


@dataclass
class JobData:
    """The job object of `GET /api/v1/jobs/{id}`; `Job` and `AsyncJob` add the calls."""

    id: str
    model: str = ""
    status: str = "processing"
    output: str | None = None
    error: str = ""
    # Milliseconds of processing, once completed.
    execution_time: int | None = None
    # Milliseconds per stage (download, inference, encode, ...).
    timings: dict[str, int] | None = None
    credits: int | None = None
    seed: int | None = None
    created_at: str | None = None
    progress: Progress | None = None
    deleted_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """Whether the job has ended (completed, failed or canceled)."""
        return self.status in TERMINAL_STATUSES

    def _update(self, data: dict[str, Any]) -> None:
        """Take every field from a fresh job object of the API."""
        timings = data.get("timings")
        self.id = str(data.get("id") or self.id)
        self.model = str(data.get("model") or self.model)
        self.status = str(data.get("status") or "processing")
        self.output = data.get("output") or None
        self.error = str(data.get("error") or "")
        self.execution_time = _int_or_none(data.get("executionTime"))
        self.timings = (
            {str(k): int(v) for k, v in timings.items()} if isinstance(timings, dict) else None
        )
        self.credits = _int_or_none(data.get("credits"))
        self.seed = _int_or_none(data.get("seed"))
        self.created_at = data.get("createdAt") or None
        self.progress = Progress.from_json(data.get("progress"))
        self.deleted_at = data.get("deletedAt") or None
        # A create answer without Prefer: wait is only {id, status}; keep what is known.
        self.raw = {**self.raw, **data} if set(data) <= {"id", "status"} else dict(data)


@dataclass(frozen=True)
class Upload:
    """`POST /api/v1/uploads`: a file of the account, usable as any formState media URL."""

    id: str
    url: str
    kind: str
    bytes: int
    content_type: str
    expires_at: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Upload:
        return cls(
            id=str(data["id"]),
            url=str(data["url"]),
            kind=str(data.get("kind") or ""),
            bytes=int(data.get("bytes") or 0),
            content_type=str(data.get("contentType") or ""),
            expires_at=str(data.get("expiresAt") or ""),
            raw=data,
        )


@dataclass(frozen=True)
class Estimate:
    """`POST /api/v1/estimate`: what a job would cost; nothing is charged."""

    billed_seconds: int
    credits: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Estimate:
        return cls(int(data["billed_seconds"]), int(data["credits"]))


@dataclass(frozen=True)
class Balance:
    """`GET /api/v1/balance`: API credits (spent by jobs) and web credits, separate."""

    api_credits: int
    user_credits: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Balance:
        return cls(int(data["api_credits"]), int(data.get("user_credits") or 0))


@dataclass(frozen=True)
class UsageEntry:
    """One ledger entry of `GET /api/v1/usage`: grant, reserve, capture or release."""

    id: str
    kind: str
    wallet: str
    credits: int
    reason: str
    created_at: str
    job_id: str | None = None
    model: str | None = None
    billed_seconds: int | None = None
    resolution: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageEntry:
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind") or ""),
            wallet=str(data.get("wallet") or ""),
            credits=int(data.get("credits") or 0),
            reason=str(data.get("reason") or ""),
            created_at=str(data.get("created_at") or ""),
            job_id=data.get("job_id"),
            model=data.get("model"),
            billed_seconds=_int_or_none(data.get("billed_seconds")),
            resolution=data.get("resolution"),
            raw=data,
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver a job's webhook."""

    attempt: int
    at: str
    status_code: int | None
    latency_ms: int | None
    error: str
    next_attempt_at: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WebhookDelivery:
        return cls(
            attempt=int(data.get("attempt") or 0),
            at=str(data.get("at") or ""),
            status_code=_int_or_none(data.get("statusCode")),
            latency_ms=_int_or_none(data.get("latencyMs")),
            error=str(data.get("error") or ""),
            next_attempt_at=data.get("nextAttemptAt"),
        )
