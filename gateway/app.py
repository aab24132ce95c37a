"""The application factory: routes, error handlers, metrics and docs."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI

from gateway import (
    errors_catalogue,
    openapi,
    problems,
    routes_account,
    routes_billing,
    routes_console,
    routes_files,
    routes_health,
    routes_job_control,
    routes_jobs,
    routes_uploads,
)
from gateway.auth import Authenticator
from gateway.clients import Backends
from gateway.ended_jobs import EndedJobs
from gateway.job_notices import JobNotices
from gateway.job_uploads import JobUploads
from gateway.job_waiters import JobWaiters
from gateway.metrics import MetricsMiddleware
from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from gateway.upload_owners import UploadOwners
from lipsync_common import notices as notice_kinds
from lipsync_common.results import result_store
from lipsync_common.storage import ObjectStore
from lipsync_common.uploads import upload_store

VERSION = "1.0.0"

DESCRIPTION = """\
Lip-sync videos from a video, a portrait or a two-person image, and audio.

Create a job with one of the `POST /api/v1/lipsync-*` endpoints, then poll
`GET /api/v1/jobs/{id}` every 5 to 10 seconds, pass a `webhook`, or send
`Prefer: wait=N` (1 to 60 s) to have the answer held until the job ends. List,
cancel and delete jobs and inspect their webhook deliveries under
`/api/v1/jobs`. Media on your own computer: `POST /api/v1/uploads` them first and use
the answer's `url`. Every error is `application/problem+json` with a stable `code`.

Sign up and log in (`/api/v1/auth/*`) to get a session token, create API keys
with it (`POST /api/v1/keys`), and use a key for jobs, balance, usage and
estimates. Webhooks are signed per Standard Webhooks with the secret of
`GET /api/v1/webhook-secret`.
"""


def create_app(
    settings: GatewaySettings,
    backends: Backends,
    *,
    notices: JobNotices | None = None,
    results: ObjectStore | None = None,
    uploads: ObjectStore | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the gateway around connected backends; the clocks are for tests.

    `notices` is job_service's notices as this replica hears them (the caller
    starts and closes it); without it, `Prefer: wait` waits its full time and
    cached ended jobs expire instead of being dropped. `results` is where the
    outputs lie; by default the results folder, or the bucket of
    `LIPSYNC_STORAGE_URL`.
    """
    app = FastAPI(
        title="Lip-sync API",
        version=VERSION,
        description=DESCRIPTION,
        servers=[{"url": settings.public_url}],
        openapi_url="/openapi.json",
        # /docs is gateway.routes_console's: Swagger UI served from here, not a CDN.
        docs_url=None,
        redoc_url=None,
        # Operation ids are the route names (`lipsync-video`, `get-job`, ...).
        generate_unique_id_function=lambda route: route.name,
    )
    problems.install(app)
    app.add_middleware(MetricsMiddleware)

    limiter = RateLimiter(settings.rate_limit_per_min, clock=monotonic)
    authenticator = Authenticator(
        backends.auth, settings.auth_cache_s, clock=monotonic, limiter=limiter
    )
    # Job validation refuses another account's upload URLs and ones that are gone
    # (gateway/upload_owners.py, gateway/job_uploads.py).
    upload_owners = UploadOwners(settings.public_url, settings.signing_key)
    uploaded = uploads or upload_store(settings.uploads_folder())
    job_uploads = JobUploads(upload_owners, uploaded, wall_clock)
    ended = EndedJobs()
    waiters = JobWaiters(settings.max_waiters, settings.max_waiters_per_account)
    # python -m gateway wakes them when it starts shutting down.
    app.state.job_waiters = waiters
    if notices is not None:
        notices.on(notice_kinds.ENDED, waiters.wake)
        notices.on(notice_kinds.DELETED, ended.forget)
    app.include_router(
        routes_jobs.router(
            backends,
            authenticator,
            settings.allow_private_urls,
            ended=ended,
            waiters=waiters,
            uploads=job_uploads,
        )
    )
    app.include_router(routes_job_control.router(backends, authenticator, ended, waiters))
    app.include_router(routes_account.router(backends, authenticator))
    app.include_router(
        routes_billing.router(
            backends,
            authenticator,
            settings.allow_private_urls,
            settings.public_url,
            job_uploads,
        )
    )
    errors_catalogue.install(app, settings.public_url)
    app.include_router(
        routes_files.router(
            results or result_store(settings.results_dir), settings.signing_key, clock=wall_clock
        )
    )
    app.include_router(
        routes_uploads.router(
            uploaded,
            authenticator,
            upload_owners,
            settings.uploads_folder(),
            settings.upload_limits,
            settings.upload_ttl_s,
            clock=wall_clock,
        )
    )
    app.include_router(routes_health.router(backends))
    app.include_router(routes_console.router(settings.public_url))
    openapi.install(app)
    return app
