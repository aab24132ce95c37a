"""One job, start to finish: fetch, probe, reserve, render, store.

The pipeline knows nothing about NATS; the worker feeds it a `JobRequested`
and publishes what it returns. Anything the user can fix raises `JobFailure`
(or the engine's `MediaError`) and ends the job `failed` with nothing charged.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from inference_service.engine import LipsyncEngine
from inference_service.failures import JobFailure
from inference_service.fetch import download
from inference_service.media.errors import MediaError
from inference_service.media.probe import probe_audio, probe_image
from inference_service.settings import WorkerSettings
from inference_service.storage import ResultStore
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import events_pb2, jobs_pb2

log = logging.getLogger(__name__)

RESOLUTIONS = {"480p": billing_pb2.RESOLUTION_480P, "720p": billing_pb2.RESOLUTION_720P}
HEIGHTS = {"480p": 480, "720p": 720}
NOT_YET = "{model} is not available yet on this server; nothing was charged"
MODEL_LABELS = {
    jobs_pb2.MODEL_LIPSYNC_VIDEO: "lipsync-video",
    jobs_pb2.MODEL_LIPSYNC_IMAGE: "lipsync-image",
    jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI: "lipsync-image-multi",
}


class AlreadySettled(Exception):
    """Billing already captured or released this job: a redelivery of a done job."""


@dataclass
class Stopwatch:
    """Integer milliseconds per stage, for the job's `timings`."""

    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, int] = field(default_factory=dict)
    _mark: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0) + round((now - self._mark) * 1000)
        self._mark = now

    def total_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


class Pipeline:
    def __init__(
        self,
        settings: WorkerSettings,
        engine: LipsyncEngine,
        billing: billing_pb2_grpc.BillingServiceStub,
        http: httpx.AsyncClient,
        store: ResultStore,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.billing = billing
        self.http = http
        self.store = store

    async def run(self, request: events_pb2.JobRequested) -> events_pb2.JobCompleted:
        """Render a job; raises JobFailure/MediaError for the user, others for retry."""
        if request.model != jobs_pb2.MODEL_LIPSYNC_IMAGE:
            raise JobFailure(NOT_YET.format(model=MODEL_LABELS.get(request.model, "this model")))
        work = self.settings.work_dir / request.job_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            return await self._image(request, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _image(self, request: events_pb2.JobRequested, work: Path) -> events_pb2.JobCompleted:
        form = request.form_state
        limits = self.settings.limits
        clock = Stopwatch()
        image_path, audio_path = work / "image", work / "audio"
        await asyncio.gather(
            self._fetch("formState.image", form.image, image_path, limits.max_image_bytes),
            self._fetch("formState.audio", form.audio, audio_path, limits.max_audio_bytes),
        )
        clock.lap("download")
        try:
            probe_image(image_path, max_pixels_side=limits.max_image_side)
            audio = probe_audio(audio_path, max_duration_s=limits.max_duration_s)
        except MediaError as exc:
            raise JobFailure(exc.user_message) from None
        clock.lap("probe")

        resolution = form.resolution or "480p"
        reserve = await self._reserve(request, resolution, [audio.duration_s])
        clock.lap("reserve")

        out_path = work / "out.mp4"
        seed = form.seed if form.HasField("seed") and form.seed >= 0 else None
        try:
            result = await asyncio.to_thread(
                self.engine.render_image,
                str(image_path),
                str(audio_path),
                str(out_path),
                height=HEIGHTS[resolution],
                seed=seed,
            )
        except MediaError as exc:
            raise JobFailure(exc.user_message) from None
        clock.lap("inference")
        output_key = self.store.put(request.job_id, out_path)
        clock.lap("store")

        timings = dict(clock.stages)
        timings.update({f"engine_{k}": v for k, v in result.timings_ms.items()})
        return events_pb2.JobCompleted(
            output_key=output_key,
            execution_time_ms=clock.total_ms(),
            timings=timings,
            credits=reserve.credits,
            billed_seconds=reserve.billed_seconds,
            duration_seconds=result.duration_s,
            seed=result.seed,
        )

    async def _fetch(self, field_name: str, url: str, dest: Path, max_bytes: int) -> None:
        await download(
            self.http, field_name, url, dest, max_bytes, self.settings.allow_private_urls
        )

    async def _reserve(
        self, request: events_pb2.JobRequested, resolution: str, durations: list[float]
    ) -> billing_pb2.ReserveResponse:
        usage = billing_pb2.Usage(
            model=request.model,
            resolution=RESOLUTIONS[resolution],
            order=request.form_state.order,
            duration_seconds=durations,
        )
        try:
            response: billing_pb2.ReserveResponse = await self.billing.Reserve(
                billing_pb2.ReserveRequest(
                    job_id=request.job_id, account_id=request.account_id, usage=usage
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            # Billing unreachable is transient: the job is retried, not failed.
            raise RuntimeError(f"billing Reserve failed: {exc.code().name}") from exc
        if response.outcome == billing_pb2.RESERVE_OUTCOME_INSUFFICIENT_CREDITS:
            raise JobFailure(
                f"insufficient credits: need {response.credits}, have {response.available_credits}"
            )
        if response.outcome == billing_pb2.RESERVE_OUTCOME_ALREADY_SETTLED:
            raise AlreadySettled(request.job_id)
        return response
