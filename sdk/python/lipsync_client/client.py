"""The blocking client: `Client`, its `jobs` and `uploads`, and `Job`.

    client = Client()                       # LIPSYNC_API_KEY, LIPSYNC_BASE_URL
    job = client.lipsync_image("face.jpg", "voice.wav", resolution="720p")
    job.wait(on_progress=lambda j: print(j.progress))
    job.download("out.mp4")

Every call goes through `Client._request`, the one place that retries
(lipsync_client/retries.py says when). Local media are uploaded first
(lipsync_client/media.py), straight to the bucket where the server offers it
(lipsync_client/direct_uploads.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from lipsync_client import _base
from lipsync_client.direct_uploads import (
    DIRECT_PATH,
    DirectChoice,
    DirectForm,
    known_size,
    start_body,
    upload_path,
)
from lipsync_client.download import CHUNK_BYTES, DownloadProgress, PartFile, content_length
from lipsync_client.errors import (
    APIConnectionError,
    APIError,
    BucketError,
    DownloadError,
    LipsyncError,
    NotFoundError,
    UploadsUnavailableError,
    WaitTimeoutError,
)
from lipsync_client.media import (
    MediaInput,
    ProgressReader,
    UploadProgress,
    content_type,
    display_name,
    is_url,
    open_media,
)
from lipsync_client.models import (
    Balance,
    Estimate,
    JobData,
    Upload,
    UsageEntry,
    WebhookDelivery,
)
from lipsync_client.retries import RETRIED_ERRORS


@dataclass
class Job(JobData):
    """A job of the account, with the calls that act on it."""

    _client: Client | None = field(default=None, repr=False, compare=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("this Job is not bound to a Client")
        return self._client

    def refresh(self) -> Job:
        """Read the job again; returns itself, updated."""
        self._update(self.client._get_job(self.id).json())
        return self

    def wait(
        self, timeout: float | None = None, on_progress: Callable[[Job], None] | None = None
    ) -> Job:
        """Block until the job has ended (or `timeout` seconds pass: `WaitTimeoutError`).

        Long-polls with `Prefer: wait`, so the answer comes the moment the job
        ends; against a server that does not hold requests it polls with a
        growing interval instead. `on_progress(job)` is called after every
        read, at least every 2 s while the job runs. Returns the job whatever
        its end: check `status` (`completed`, `failed` or `canceled`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = _base.FIRST_POLL_INTERVAL_S
        while not self.done:
            hold: int | None = (
                _base.MAX_PREFER_WAIT_S if on_progress is None else _base.PROGRESS_WAIT_S
            )
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeoutError(self.id, timeout or 0)
                # Never held past the deadline; under a second left, one plain read.
                hold = min(hold or 0, math.floor(remaining)) or None
            started = time.monotonic()
            response = self.client._get_job(self.id, wait=hold)
            self._update(response.json())
            if on_progress is not None:
                on_progress(self)
            if self.done:
                break
            held = time.monotonic() - started
            if hold is None or not _base.prefer_applied(response) or held < hold / 2:
                pause = interval if deadline is None else min(interval, deadline - time.monotonic())
                time.sleep(max(0.0, pause))
                interval = _base.next_poll_interval(interval)
        return self

    def cancel(self) -> Job:
        """Cancel the job (`ConflictError` code `job_finished` when it has ended already)."""
        self._update(self.client._request("POST", f"{_base.job_path(self.id)}/cancel").json())
        return self

    def delete(self) -> None:
        """Delete the ended job's output and inputs; the job stays readable, output null."""
        self.client._request("DELETE", _base.job_path(self.id))
        self.output = None

    def download(
        self, path: str | os.PathLike[str], on_progress: DownloadProgress | None = None
    ) -> Path:
        """Save the completed job's MP4 at `path` (whole or not at all); returns the path."""
        if self.status != "completed" or not self.output:
            raise DownloadError(f"job {self.id} has no output to download (status {self.status})")
        return self.client._download(self.output, path, on_progress)

    def webhook_deliveries(self) -> tuple[list[WebhookDelivery], bool]:
        """Every attempt to deliver the job's webhook, oldest first, and whether one succeeded."""
        data = self.client._request("GET", f"{_base.job_path(self.id)}/webhook-deliveries").json()
        return [WebhookDelivery.from_json(d) for d in data.get("data", [])], bool(
            data.get("delivered")
        )

    def redeliver_webhook(self) -> None:
        """Send the ended job's webhook again now, with the same webhook-id."""
        path = f"{_base.job_path(self.id)}/webhook-deliveries/redeliver"
        self.client._request("POST", path)


class Jobs:
    """`client.jobs`: read, list and control the account's jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, job_id: str) -> Job:
        return self._client._job(self._client._get_job(job_id).json())

    def list(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        page_size: int = 20,
    ) -> Iterator[Job]:
        """The account's jobs, newest first, over every page (at most `limit` of them)."""
        cursor: str | None = None
        seen = 0
        while True:
            params = _base.list_params(status, model, page_size, cursor)
            page = self._client._request("GET", "/api/v1/jobs", params=params).json()
            for data in page.get("data", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield self._client._job(data)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return

    def cancel(self, job_id: str) -> Job:
        return Job(id=job_id, _client=self._client).cancel()

    def delete(self, job_id: str) -> None:
        Job(id=job_id, _client=self._client).delete()

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        return self.get(job_id).wait(timeout=timeout, on_progress=on_progress)


class Uploads:
    """`client.uploads`: files of this machine, turned into URLs jobs can use."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        file: MediaInput,
        *,
        filename: str | None = None,
        on_progress: UploadProgress | None = None,
        direct: bool | None = None,
    ) -> Upload:
        """Upload a local path or an open binary file; its URL works in this account's jobs.

        Sent straight to the server's bucket where it offers that and the size
        is known (lipsync_client/direct_uploads.py), else as a multipart
        `POST /api/v1/uploads`. `direct`: None (the client's default) chooses
        so, True insists on the bucket, False never tries it. `on_progress(name,
        sent, total)` counts the bytes sent, wherever they go.
        """
        name = filename or display_name(file)
        stream, opened = open_media(file)
        try:
            reader = ProgressReader(stream, name, on_progress)
            if self._client._direct.wanted(direct, known_size(reader)):
                upload = self._direct(reader, direct)
                if upload is not None:
                    return upload
            return self._multipart(reader)
        finally:
            if opened:
                stream.close()

    def _direct(self, reader: ProgressReader, direct: bool | None) -> Upload | None:
        """The upload sent to the bucket; None when the server has no direct uploads."""
        client = self._client
        size = reader.total or 0
        try:
            started = client._request(
                "POST", DIRECT_PATH, json=start_body(size), headers=_base.create_headers(None, None)
            )
        except APIError as error:
            if client._direct.refused(error, direct):
                return None
            raise
        form = DirectForm.from_json(started.json())
        try:
            client._send_form(form, reader)
        except LipsyncError:
            # The pending upload would only wait for the bucket's lifecycle rule.
            self._discard(form.id)
            raise
        completed = client._request("POST", form.complete_target(client.base_url))
        return Upload.from_json(completed.json())

    def _discard(self, upload_id: str) -> None:
        try:
            self.delete(upload_id)
        except LipsyncError:
            pass

    def _multipart(self, reader: ProgressReader) -> Upload:
        def files() -> dict[str, Any]:
            # Each try sends the whole file again (httpx reads it from the start).
            reader.seek(0)
            return {"file": (reader.name, reader, content_type(reader.name))}

        try:
            response = self._client._request("POST", "/api/v1/uploads", files=files)
        except NotFoundError as error:
            if error.code not in ("", "not_found"):
                raise
            raise UploadsUnavailableError(
                404,
                "uploads_unavailable",
                "this API has no POST /api/v1/uploads; pass public http(s) URLs instead",
            ) from error
        return Upload.from_json(response.json())

    def get(self, upload_id: str) -> Upload:
        return Upload.from_json(self._client._request("GET", upload_path(upload_id)).json())

    def delete(self, upload_id: str) -> None:
        """Delete an upload now (a direct one not completed yet too)."""
        self._client._request("DELETE", upload_path(upload_id))


class Client:
    """The lip-sync API, blocking. Thread-safe; reuse one per process and `close()` it."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = _base.DEFAULT_TIMEOUT_S,
        max_retries: int = _base.DEFAULT_MAX_RETRIES,
        *,
        direct_uploads: bool | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = _base.Settings(api_key, base_url, timeout, max_retries)
        # `uploads.create`'s default: None sends files to the bucket where the server offers it.
        self._direct = DirectChoice(direct_uploads)
        self._http = httpx.Client(
            base_url=self._settings.base_url,
            headers=self._settings.headers(),
            timeout=timeout,
            transport=transport,
        )
        # Outputs are downloaded without the API key: it never goes to another host.
        self._plain = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)
        self.jobs = Jobs(self)
        self.uploads = Uploads(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def close(self) -> None:
        self._http.close()
        self._plain.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # The three models (API.md "Creating jobs").

    def lipsync_video(
        self,
        video: MediaInput,
        audio: MediaInput,
        *,
        resolution: str | None = None,
        mask_image: MediaInput | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        wait: int | None = None,
        on_upload: UploadProgress | None = None,
    ) -> Job:
        """Re-animate the lips of `video` to `audio`. Local media are uploaded first."""
        return self._create(
            "lipsync-video",
            {"video": video, "audio": audio, "mask_image": mask_image},
            {"resolution": resolution, "prompt": prompt, "seed": seed},
            webhook,
            idempotency_key,
            wait,
            on_upload,
        )

    def lipsync_image(
        self,
        image: MediaInput,
        audio: MediaInput,
        *,
        resolution: str | None = None,
        mask_image: MediaInput | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        wait: int | None = None,
        on_upload: UploadProgress | None = None,
    ) -> Job:
        """A talking video of the portrait `image` speaking `audio`."""
        return self._create(
            "lipsync-image",
            {"image": image, "audio": audio, "mask_image": mask_image},
            {"resolution": resolution, "prompt": prompt, "seed": seed},
            webhook,
            idempotency_key,
            wait,
            on_upload,
        )

    def lipsync_image_multi(
        self,
        image: MediaInput,
        left_audio: MediaInput,
        right_audio: MediaInput,
        *,
        order: str | None = None,
        resolution: str | None = None,
        mask_image: MediaInput | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        wait: int | None = None,
        on_upload: UploadProgress | None = None,
    ) -> Job:
        """A conversation of the two people of `image`.

        `order`: `left_right` (default), `right_left` or `meanwhile` (both at once).
        """
        return self._create(
            "lipsync-image-multi",
            {
                "image": image,
                "left_audio": left_audio,
                "right_audio": right_audio,
                "mask_image": mask_image,
            },
            {"order": order, "resolution": resolution, "prompt": prompt, "seed": seed},
            webhook,
            idempotency_key,
            wait,
            on_upload,
        )

    # Account.

    def estimate(
        self,
        model: str,
        *,
        on_upload: UploadProgress | None = None,
        **form: Any,
    ) -> Estimate:
        """What a job would cost; nothing is charged.

        `estimate("lipsync-image", image=..., audio=..., resolution="720p")`: the
        formState fields as keywords; local media are uploaded first.
        """
        media = {name: form.pop(name) for name in _base.MEDIA_FIELDS if name in form}
        state = _base.form_state(self._media_urls(media, on_upload), form)
        body = {"model": model, "formState": state}
        return Estimate.from_json(self._request("POST", "/api/v1/estimate", json=body).json())

    def balance(self) -> Balance:
        return Balance.from_json(self._request("GET", "/api/v1/balance").json())

    def usage(self, *, limit: int | None = None, page_size: int = 50) -> Iterator[UsageEntry]:
        """Ledger entries, newest first, over every page (at most `limit`)."""
        cursor: str | None = None
        seen = 0
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/api/v1/usage", params=params).json()
            for data in page.get("data", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield UsageEntry.from_json(data)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return

    # Plumbing.

    def _job(self, data: dict[str, Any]) -> Job:
        job = Job(id=str(data["id"]), _client=self)
        job._update(data)
        return job

    def _create(
        self,
        model: str,
        media: dict[str, MediaInput | None],
        options: dict[str, Any],
        webhook: str | None,
        idempotency_key: str | None,
        wait: int | None,
        on_upload: UploadProgress | None,
    ) -> Job:
        state = _base.form_state(self._media_urls(media, on_upload), options)
        response = self._request(
            "POST",
            f"/api/v1/{model}",
            json=_base.create_body(state, webhook),
            headers=_base.create_headers(idempotency_key, wait),
            timeout=self._settings.timeout_for(wait),
        )
        job = self._job(response.json())
        job.model = job.model or model
        return job

    def _media_urls(
        self, media: dict[str, MediaInput | None], on_upload: UploadProgress | None
    ) -> dict[str, str]:
        urls: dict[str, str] = {}
        for name, value in media.items():
            if value is None:
                continue
            if is_url(value):
                urls[name] = str(value)
            else:
                urls[name] = self.uploads.create(value, on_progress=on_upload).url
        return urls

    def _get_job(self, job_id: str, wait: int | None = None) -> httpx.Response:
        return self._request(
            "GET",
            _base.job_path(job_id),
            headers=_base.prefer_headers(wait),
            timeout=self._settings.timeout_for(wait),
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        files: Callable[[], dict[str, Any]] | None = None,
    ) -> httpx.Response:
        """Send, retrying as RetryPolicy says; a 2xx answer or an exception."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    files=files() if files is not None else None,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except RETRIED_ERRORS as error:
                delay = self._settings.retry.delay_after(attempt, None)
                if delay is None:
                    raise APIConnectionError(
                        f"{method} {self.base_url}{path}: {error!r} (after {attempt + 1} tries)"
                    ) from error
            else:
                if response.is_success:
                    return response
                delay = self._settings.retry.delay_after(attempt, response)
                if delay is None:
                    raise APIError.from_response(response)
            time.sleep(delay)
            attempt += 1

    def _send_form(self, form: DirectForm, reader: ProgressReader) -> None:
        """POST the file to the bucket with its form (no API key), retried as `_request` is."""
        attempt = 0
        while True:
            try:
                response = self._plain.post(form.url, **form.request(reader))
            except RETRIED_ERRORS as error:
                delay = self._settings.retry.delay_after(attempt, None)
                if delay is None:
                    raise APIConnectionError(
                        f"POST {form.url}: {error!r} (after {attempt + 1} tries)"
                    ) from error
            else:
                if response.is_success:
                    return
                delay = self._settings.retry.delay_after(attempt, response)
                if delay is None:
                    raise BucketError.from_response(response)
            time.sleep(delay)
            attempt += 1

    def _download(
        self, url: str, path: str | os.PathLike[str], on_progress: DownloadProgress | None
    ) -> Path:
        attempt = 0
        while True:
            try:
                with self._plain.stream(
                    "GET", url, headers={"accept-encoding": "identity"}
                ) as response:
                    if not response.is_success:
                        raise DownloadError(f"GET {url} answered {response.status_code}")
                    total = content_length(response.headers.get("content-length"))
                    with PartFile(path, total) as part:
                        for chunk in response.iter_bytes(CHUNK_BYTES):
                            part.write(chunk)
                            if on_progress is not None:
                                on_progress(part.written, total)
                    return part.target
            except RETRIED_ERRORS as error:
                delay = self._settings.retry.delay_after(attempt, None)
                if delay is None:
                    raise DownloadError(f"GET {url}: {error!r}") from error
            time.sleep(delay)
            attempt += 1
