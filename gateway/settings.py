"""The gateway's settings, read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.job_waiters import DEFAULT_MAX_WAITERS, DEFAULT_MAX_WAITERS_PER_ACCOUNT
from lipsync_common.config import (
    DEFAULT_GATEWAY_METRICS_ADDR,
    DEFAULT_HTTP_ADDR,
    DEFAULT_PUBLIC_URL,
    data_dir,
    env_bool,
    env_float,
    env_int,
    env_str,
    max_media_bytes,
    nats_url,
    service_addr,
)
from lipsync_common.signing import load_signing_key
from lipsync_common.uploads import DEFAULT_TTL_S, upload_ttl_s, uploads_dir


@dataclass(frozen=True)
class GatewaySettings:
    http_addr: str
    # Where clients reach the gateway; output URLs are built by job_service, so
    # the gateway itself only mentions it in the API docs.
    public_url: str
    results_dir: Path
    # Lets a webhook use http:// and private addresses, for local development.
    allow_private_urls: bool
    # How long a successful authentication is reused. Kept well under one
    # second because a revoked key must be refused within a second.
    auth_cache_s: float
    auth_addr: str
    billing_addr: str
    jobs_addr: str
    # How long requests in flight may take to finish after SIGTERM.
    shutdown_grace_s: float
    # Checks the signature of result download URLs; never printed.
    signing_key: bytes = field(repr=False)
    # Requests per minute per API key (or session) on this replica; 0 is no
    # limit. See gateway.ratelimit for why it is per replica.
    rate_limit_per_min: int = 120
    # Where POST /api/v1/estimate has the media probed; empty disables it.
    inference_addr: str = ""
    # Where job_service's notices come from (Prefer: wait, cache drops); empty: none.
    nats_url: str = ""
    # Requests waiting on `Prefer: wait` at once, per replica and per account;
    # past them a request is answered without waiting (gateway/job_waiters.py).
    max_waiters: int = DEFAULT_MAX_WAITERS
    max_waiters_per_account: int = DEFAULT_MAX_WAITERS_PER_ACCOUNT
    # Uploads (gateway/routes_uploads.py): their folder (None: `uploads` beside
    # the results folder; with a bucket, only for files still arriving), how
    # long they live, and the size cap of each kind, the workers' download limits.
    uploads_dir: Path | None = None
    upload_ttl_s: float = DEFAULT_TTL_S
    upload_limits: Mapping[str, int] = field(default_factory=max_media_bytes)
    # Prometheus /metrics, apart from the API so that the Ingress never exposes it.
    metrics_addr: str = DEFAULT_GATEWAY_METRICS_ADDR

    @classmethod
    def from_env(cls) -> GatewaySettings:
        results_default = str(data_dir() / "results")
        return cls(
            http_addr=env_str("LIPSYNC_HTTP_ADDR", DEFAULT_HTTP_ADDR),
            public_url=env_str("LIPSYNC_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/"),
            results_dir=Path(env_str("LIPSYNC_RESULTS_DIR", results_default)).resolve(),
            allow_private_urls=env_bool("LIPSYNC_ALLOW_PRIVATE_URLS", False),
            auth_cache_s=max(0.0, env_float("LIPSYNC_AUTH_CACHE_S", 0.5)),
            auth_addr=service_addr("auth"),
            billing_addr=service_addr("billing"),
            jobs_addr=service_addr("jobs"),
            shutdown_grace_s=env_float("LIPSYNC_SHUTDOWN_GRACE_S", 10.0),
            signing_key=load_signing_key(),
            rate_limit_per_min=env_int("LIPSYNC_RATE_LIMIT_PER_MIN", 120),
            inference_addr=service_addr("inference"),
            nats_url=nats_url(),
            max_waiters=max(0, env_int("LIPSYNC_MAX_WAITERS", DEFAULT_MAX_WAITERS)),
            max_waiters_per_account=max(
                0, env_int("LIPSYNC_MAX_WAITERS_PER_ACCOUNT", DEFAULT_MAX_WAITERS_PER_ACCOUNT)
            ),
            metrics_addr=env_str("LIPSYNC_GATEWAY_METRICS_ADDR", DEFAULT_GATEWAY_METRICS_ADDR),
            uploads_dir=uploads_dir().resolve(),
            upload_ttl_s=upload_ttl_s(),
            upload_limits=max_media_bytes(),
        )

    def uploads_folder(self) -> Path:
        return self.uploads_dir or self.results_dir.parent / "uploads"
