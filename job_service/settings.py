"""job_service configuration, from environment variables only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipsync_common.config import (
    DEFAULT_PUBLIC_URL,
    database_url,
    env_bool,
    env_float,
    env_int,
    env_str,
    nats_url,
)
from lipsync_common.results import results_dir


@dataclass(frozen=True)
class JobSettings:
    database_url: str
    nats_url: str
    # Base of the output URLs handed to clients, e.g. https://api.example.com.
    public_url: str
    # How long an output URL stays valid after the job finished.
    result_ttl_s: int
    webhook_timeout_s: float
    # Failed webhook deliveries are retried, backing off, for this long.
    webhook_retry_window_s: float
    allow_private_urls: bool
    # A job not handed to NATS within this many seconds is published again.
    outbox_interval_s: float
    # Jobs in processing per account before a new one is refused (429); 0: no cap.
    max_processing_jobs: int
    # Where the outputs lie, to delete them (on request, or past result_ttl_s).
    results_dir: Path
    # How often outputs past their retention are looked for.
    retention_interval_s: float

    @classmethod
    def from_env(cls) -> JobSettings:
        return cls(
            database_url=database_url("jobs"),
            nats_url=nats_url(),
            public_url=env_str("LIPSYNC_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/"),
            result_ttl_s=env_int("LIPSYNC_RESULT_TTL_S", 7 * 24 * 3600),
            webhook_timeout_s=env_float("LIPSYNC_WEBHOOK_TIMEOUT_S", 10.0),
            webhook_retry_window_s=env_float("LIPSYNC_WEBHOOK_RETRY_WINDOW_S", 24 * 3600.0),
            allow_private_urls=env_bool("LIPSYNC_ALLOW_PRIVATE_URLS", False),
            outbox_interval_s=env_float("LIPSYNC_OUTBOX_INTERVAL_S", 2.0),
            max_processing_jobs=env_int("LIPSYNC_MAX_PROCESSING_JOBS", 10),
            results_dir=results_dir(),
            retention_interval_s=env_float("LIPSYNC_RETENTION_INTERVAL_S", 60.0),
        )
