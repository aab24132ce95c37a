"""What `Client` and `AsyncClient` share: settings, headers and request bodies.

Both build the same requests; only the sending differs (blocking or
asyncio), so everything that decides what is sent lives here once.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx

from lipsync_client.errors import ConfigurationError
from lipsync_client.retries import RetryPolicy

__version__ = "0.1.0"

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 2
# `Prefer: wait=N` accepts 1 to 60 (API.md "Waiting for the result in the same call").
MAX_PREFER_WAIT_S = 60
# While a progress callback listens, a wait is held this long at most, so the bar moves.
PROGRESS_WAIT_S = 2
# The API says: poll every 5 to 10 s; a server without `Prefer: wait` is polled up to that.
MAX_POLL_INTERVAL_S = 5.0
FIRST_POLL_INTERVAL_S = 1.0

MEDIA_FIELDS = ("video", "image", "audio", "left_audio", "right_audio", "mask_image")


class Settings:
    """API key, base URL, timeout and retries: given, or from the environment."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("LIPSYNC_API_KEY", "")
        if not key:
            raise ConfigurationError(
                "no API key: set LIPSYNC_API_KEY (or pass --api-key, api_key=...); keys look"
                " like sk_<id>_<secret>"
            )
        url = (base_url or os.environ.get("LIPSYNC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not url.lower().startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, not {url!r}")
        self.api_key = key
        self.base_url = url
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max(0, max_retries))

    def headers(self) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self.api_key}",
            "user-agent": f"lipsync-client/{__version__} httpx/{httpx.__version__}",
            "accept": "application/json",
        }

    def timeout_for(self, held_s: int | None) -> float:
        """A request held by `Prefer: wait=N` gets N seconds more than the usual timeout."""
        return self.timeout + (held_s or 0)


def prefer_headers(wait: int | None) -> dict[str, str]:
    if wait is None:
        return {}
    if not 1 <= wait <= MAX_PREFER_WAIT_S:
        raise ValueError(f"wait must be 1 to {MAX_PREFER_WAIT_S} seconds, not {wait}")
    return {"prefer": f"wait={wait}"}


def create_headers(idempotency_key: str | None, wait: int | None) -> dict[str, str]:
    # Generated when absent, so the client's own retries of this call make one job, not two.
    return {"idempotency-key": idempotency_key or str(uuid.uuid4()), **prefer_headers(wait)}


def form_state(media_urls: dict[str, str], options: dict[str, Any]) -> dict[str, Any]:
    """formState: the media URLs and the options that were given (None means: leave out)."""
    state: dict[str, Any] = dict(media_urls)
    state.update({name: value for name, value in options.items() if value is not None})
    return state


def create_body(state: dict[str, Any], webhook: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"formState": state}
    if webhook is not None:
        body["webhook"] = webhook
    return body


def job_path(job_id: str) -> str:
    if not job_id or "/" in job_id:
        raise ValueError(f"not a job id: {job_id!r}")
    return f"/api/v1/jobs/{job_id}"


def list_params(
    status: str | None, model: str | None, page_size: int, cursor: str | None
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": page_size}
    if status:
        params["status"] = status
    if model:
        params["model"] = model
    if cursor:
        params["cursor"] = cursor
    return params


def prefer_applied(response: httpx.Response) -> bool:
    return "wait=" in response.headers.get("preference-applied", "")


def next_poll_interval(interval: float) -> float:
    return min(MAX_POLL_INTERVAL_S, interval * 1.5)
