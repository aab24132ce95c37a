"""The asyncio client: `AsyncClient` and `AsyncJob`, the same calls as `Client`, awaited.

    async with AsyncClient() as client:
        job = await client.lipsync_image("face.jpg", "voice.wav")
        await job.wait()
        await job.download("out.mp4")

Requests are built by lipsync_client/_base.py exactly as the blocking client
builds them; only the sending (and the sleeping between retries) differs.
Local files are read in a blocking way in chunks, as httpx does.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
class AsyncJob(JobData):
    """A job of the account, with the calls that act on it."""

    _client: AsyncClient | None = field(default=None, repr=False, compare=False)

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("this Job is not bound to an AsyncClient")
        return self._client

    async def refresh(self) -> AsyncJob:
        """Read the job again; returns itself, updated."""
        self._update((await self.client._get_job(self.id)).json())
        return self

    async def wait(
        self,
        # The same signature as Job.wait, which asyncio.timeout could not give a blocking client.
        timeout: float | None = None,  # noqa: ASYNC109
        on_progress: Callable[[AsyncJob], Awaitable[None] | None] | None = None,
    ) -> AsyncJob:
        """Return once the job has ended (or `timeout` seconds pass: `WaitTimeoutError`).

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
            response = await self.client._get_job(self.id, wait=hold)
            self._update(response.json())
            if on_progress is not None:
                result = on_progress(self)
                if result is not None:
                    await result
            if self.done:
                break
            held = time.monotonic() - started
            if hold is None or not _base.prefer_applied(response) or held < hold / 2:
                pause = interval if deadline is None else min(interval, deadline - time.monotonic())
                await asyncio.sleep(max(0.0, pause))
                interval = _base.next_poll_interval(interval)
        return self

    async def cancel(self) -> AsyncJob:
        """Cancel the job (`ConflictError` code `job_finished` when it has ended already)."""
        response = await self.client._request("POST", f"{_base.job_path(self.id)}/cancel")
        self._update(response.json())
        return self

    async def delete(self) -> None:
        """Delete the ended job's output and inputs; the job stays readable, output null."""
        await self.client._request("DELETE", _base.job_path(self.id))
        self.output = None

    async def download(
        self, path: str | os.PathLike[str], on_progress: DownloadProgress | None = None
    ) -> Path:
        """Save the completed job's MP4 at `path` (whole or not at all); returns the path."""
        if self.status != "completed" or not self.output:
            raise DownloadError(f"job {self.id} has no output to download (status {self.status})")
        return await self.client._download(self.output, path, on_progress)

    async def webhook_deliveries(self) -> tuple[list[WebhookDelivery], bool]:
        """Every attempt to deliver the job's webhook, oldest first, and whether one succeeded."""
        response = await self.client._request(
            "GET", f"{_base.job_path(self.id)}/webhook-deliveries"
        )
        data = response.json()
        return [WebhookDelivery.from_json(d) for d in data.get("data", [])], bool(
            data.get("delivered")
        )

    async def redeliver_webhook(self) -> None:
        """Send the ended job's webhook again now, with the same webhook-id."""
        path = f"{_base.job_path(self.id)}/webhook-deliveries/redeliver"
        await self.client._request("POST", path)


class AsyncJobs:
    """`client.jobs`: read, list and control the account's jobs."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, job_id: str) -> AsyncJob:
        return self._client._job((await self._client._get_job(job_id)).json())

    async def list(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        page_size: int = 20,
    ) -> AsyncIterator[AsyncJob]:
        """The account's jobs, newest first, over every page (at most `limit` of them)."""
        cursor: str | None = None
        seen = 0
        while True:
            params = _base.list_params(status, model, page_size, cursor)
            page = (await self._client._request("GET", "/api/v1/jobs", params=params)).json()
            for data in page.get("data", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield self._client._job(data)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return

    async def cancel(self, job_id: str) -> AsyncJob:
        return await AsyncJob(id=job_id, _client=self._client).cancel()

    async def delete(self, job_id: str) -> None:
        await AsyncJob(id=job_id, _client=self._client).delete()

    async def wait(
        self,
        job_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
        on_progress: Callable[[AsyncJob], Awaitable[None] | None] | None = None,
    ) -> AsyncJob:
        return await (await self.get(job_id)).wait(timeout=timeout, on_progress=on_progress)


class AsyncUploads:
    """`client.uploads`: files of this machine, turned into URLs jobs can use."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
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
                upload = await self._direct(reader, direct)
                if upload is not None:
                    return upload
            return await self._multipart(reader)
        finally:
            if opened:
                stream.close()

    async def _direct(self, reader: ProgressReader, direct: bool | None) -> Upload | None:
        """The upload sent to the bucket; None when the server has no direct uploads."""
        client = self._client
        size = reader.total or 0
        try:
            started = await client._request(
                "POST", DIRECT_PATH, json=start_body(size), headers=_base.create_headers(None, None)
            )
        except APIError as error:
            if client._direct.refused(error, direct):
                return None
            raise
        form = DirectForm.from_json(started.json())
        try:
            await client._send_form(form, reader)
        except LipsyncError:
            # The pending upload would only wait for the bucket's lifecycle rule.
            await self._discard(form.id)
            raise
        completed = await client._request("POST", form.complete_target(client.base_url))
        return Upload.from_json(completed.json())

    async def _discard(self, upload_id: str) -> None:
        try:
            await self.delete(upload_id)
        except LipsyncError:
            pass

    async def _multipart(self, reader: ProgressReader) -> Upload:
        def files() -> dict[str, Any]:
            # Each try sends the whole file again (httpx reads it from the start).
            reader.seek(0)
            return {"file": (reader.name, reader, content_type(reader.name))}

        try:
            response = await self._client._request("POST", "/api/v1/uploads", files=files)
        except NotFoundError as error:
            if error.code not in ("", "not_found"):
                raise
            raise UploadsUnavailableError(
                404,
                "uploads_unavailable",
                "this API has no POST /api/v1/uploads; pass public http(s) URLs instead",
            ) from error
        return Upload.from_json(response.json())

    async def get(self, upload_id: str) -> Upload:
        response = await self._client._request("GET", upload_path(upload_id))
        return Upload.from_json(response.json())

    async def delete(self, upload_id: str) -> None:
        """Delete an upload now (a direct one not completed yet too)."""
        await self._client._request("DELETE", upload_path(upload_id))


class AsyncClient:
    """The lip-sync API for asyncio. Reuse one per event loop and `await close()` it."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = _base.DEFAULT_TIMEOUT_S,
        max_retries: int = _base.DEFAULT_MAX_RETRIES,
        *,
        direct_uploads: bool | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = _base.Settings(api_key, base_url, timeout, max_retries)
        # `uploads.create`'s default: None sends files to the bucket where the server offers it.
        self._direct = DirectChoice(direct_uploads)
        self._http = httpx.AsyncClient(
            base_url=self._settings.base_url,
            headers=self._settings.headers(),
            timeout=timeout,
            transport=transport,
        )
        # Outputs are downloaded without the API key: it never goes to another host.
        self._plain = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=True)
        self.jobs = AsyncJobs(self)
        self.uploads = AsyncUploads(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    async def close(self) -> None:
        await self._http.aclose()
        await self._plain.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # The three models (API.md "Creating jobs").

    async def lipsync_video(
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
    ) -> AsyncJob:
        """Re-animate the lips of `video` to `audio`. Local media are uploaded first."""
        return await self._create(
            "lipsync-video",
            {"video": video, "audio": audio, "mask_image": mask_image},
            {"resolution": resolution, "prompt": prompt, "seed": seed},
            webhook,
            idempotency_key,
            wait,
            on_upload,
        )

    async def lipsync_image(
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
    ) -> AsyncJob:
        """A talking video of the portrait `image` speaking `audio`."""
        return await self._create(
            "lipsync-image",
            {"image": image, "audio": audio, "mask_image": mask_image},
            {"resolution": resolution, "prompt": prompt, "seed": seed},
            webhook,
            idempotency_key,
            wait,
            on_upload,
        )

    async def lipsync_image_multi(
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
    ) -> AsyncJob:
        """A conversation of the two people of `image`.

        `order`: `left_right` (default), `right_left` or `meanwhile` (both at once).
        """
        return await self._create(
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

    async def estimate(
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
        state = _base.form_state(await self._media_urls(media, on_upload), form)
        body = {"model": model, "formState": state}
        response = await self._request("POST", "/api/v1/estimate", json=body)
        return Estimate.from_json(response.json())

    async def balance(self) -> Balance:
        return Balance.from_json((await self._request("GET", "/api/v1/balance")).json())

    async def usage(
        self, *, limit: int | None = None, page_size: int = 50
    ) -> AsyncIterator[UsageEntry]:
        """Ledger entries, newest first, over every page (at most `limit`)."""
        cursor: str | None = None
        seen = 0
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = (await self._request("GET", "/api/v1/usage", params=params)).json()
            for data in page.get("data", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield UsageEntry.from_json(data)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return

    # Plumbing.

    def _job(self, data: dict[str, Any]) -> AsyncJob:
        job = AsyncJob(id=str(data["id"]), _client=self)
        job._update(data)
        return job

    async def _create(
        self,
        model: str,
        media: dict[str, MediaInput | None],
        options: dict[str, Any],
        webhook: str | None,
        idempotency_key: str | None,
        wait: int | None,
        on_upload: UploadProgress | None,
    ) -> AsyncJob:
        state = _base.form_state(await self._media_urls(media, on_upload), options)
        response = await self._request(
            "POST",
            f"/api/v1/{model}",
            json=_base.create_body(state, webhook),
            headers=_base.create_headers(idempotency_key, wait),
            timeout=self._settings.timeout_for(wait),
        )
        job = self._job(response.json())
        job.model = job.model or model
        return job

    async def _media_urls(
        self, media: dict[str, MediaInput | None], on_upload: UploadProgress | None
    ) -> dict[str, str]:
        urls: dict[str, str] = {}
        for name, value in media.items():
            if value is None:
                continue
            if is_url(value):
                urls[name] = str(value)
            else:
                urls[name] = (await self.uploads.create(value, on_progress=on_upload)).url
        return urls

    async def _get_job(self, job_id: str, wait: int | None = None) -> httpx.Response:
        return await self._request(
            "GET",
            _base.job_path(job_id),
            headers=_base.prefer_headers(wait),
            timeout=self._settings.timeout_for(wait),
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        # Per-request httpx timeout (a held Prefer: wait needs longer), not a deadline.
        timeout: float | None = None,  # noqa: ASYNC109
        files: Callable[[], dict[str, Any]] | None = None,
    ) -> httpx.Response:
        """Send, retrying as RetryPolicy says; a 2xx answer or an exception."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _send_form(self, form: DirectForm, reader: ProgressReader) -> None:
        """POST the file to the bucket with its form (no API key), retried as `_request` is."""
        attempt = 0
        while True:
            try:
                response = await self._plain.post(form.url, **form.request(reader))
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _download(
        self, url: str, path: str | os.PathLike[str], on_progress: DownloadProgress | None
    ) -> Path:
        attempt = 0
        while True:
            try:
                async with self._plain.stream(
                    "GET", url, headers={"accept-encoding": "identity"}
                ) as response:
                    if not response.is_success:
                        raise DownloadError(f"GET {url} answered {response.status_code}")
                    total = content_length(response.headers.get("content-length"))
                    with PartFile(path, total) as part:
                        async for chunk in response.aiter_bytes(CHUNK_BYTES):
                            part.write(chunk)
                            if on_progress is not None:
                                on_progress(part.written, total)
                    return part.target
            except RETRIED_ERRORS as error:
                delay = self._settings.retry.delay_after(attempt, None)
                if delay is None:
                    raise DownloadError(f"GET {url}: {error!r}") from error
            await asyncio.sleep(delay)
            attempt += 1
