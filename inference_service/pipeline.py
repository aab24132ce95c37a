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
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.failures import JobFailure
from inference_service.fetch import download
from inference_service.media.errors import MediaError
from inference_service.media.probe import probe_audio, probe_image, probe_video
from inference_service.settings import WorkerSettings
from inference_service.storage import ResultStore
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import events_pb2, jobs_pb2

log = logging.getLogger(__name__)

RESOLUTIONS = {"480p": billing_pb2.RESOLUTION_480P, "720p": billing_pb2.RESOLUTION_720P}
HEIGHTS = {"480p": 480, "720p": 720}
ORDERS = {
    jobs_pb2.ORDER_UNSPECIFIED: "left_right",
    jobs_pb2.ORDER_LEFT_RIGHT: "left_right",
    jobs_pb2.ORDER_RIGHT_LEFT: "right_left",
    jobs_pb2.ORDER_MEANWHILE: "meanwhile",
}
MODELS = (
    jobs_pb2.MODEL_LIPSYNC_VIDEO,
    jobs_pb2.MODEL_LIPSYNC_IMAGE,
    jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI,
)


@dataclass(frozen=True)
class Input:
    """One downloaded input: the formState field it came from and where it lies."""

    field: str
    url: str
    path: Path
    max_bytes: int


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
        if request.model not in MODELS:
            raise JobFailure("unknown model; nothing was charged")
        work = self.settings.work_dir / request.job_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            return await self._render(request, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def probe_durations(
        self, model: jobs_pb2.Model.ValueType, form: jobs_pb2.FormState
    ) -> list[float]:
        """Download only a request's audio inputs and return their durations (for estimates).

        Raises JobFailure with a user-facing message when one cannot be fetched or decoded.
        """
        if model not in MODELS:
            raise JobFailure("unknown model")
        work = self.settings.work_dir / f"probe-{uuid.uuid4().hex}"
        work.mkdir(parents=True)
        try:
            inputs = {
                name: item
                for name, item in self._inputs(model, form, work).items()
                if name.endswith("audio")
            }
            await asyncio.gather(
                *(self._fetch(i.field, i.url, i.path, i.max_bytes) for i in inputs.values())
            )
            names = ("left_audio", "right_audio") if "left_audio" in inputs else ("audio",)
            limit = self.settings.limits.max_duration_s
            try:
                return [
                    probe_audio(inputs[name].path, max_duration_s=limit).duration_s
                    for name in names
                ]
            except MediaError as exc:
                raise JobFailure(exc.user_message) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _inputs(
        self, model: jobs_pb2.Model.ValueType, form: jobs_pb2.FormState, work: Path
    ) -> dict[str, Input]:
        limits = self.settings.limits
        wanted = {
            jobs_pb2.MODEL_LIPSYNC_VIDEO: [
                ("video", form.video, limits.max_video_bytes),
                ("audio", form.audio, limits.max_audio_bytes),
            ],
            jobs_pb2.MODEL_LIPSYNC_IMAGE: [
                ("image", form.image, limits.max_image_bytes),
                ("audio", form.audio, limits.max_audio_bytes),
            ],
            jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI: [
                ("image", form.image, limits.max_image_bytes),
                ("left_audio", form.left_audio, limits.max_audio_bytes),
                ("right_audio", form.right_audio, limits.max_audio_bytes),
            ],
        }[model]
        if form.mask_image:
            wanted.append(("mask_image", form.mask_image, limits.max_image_bytes))
        return {
            name: Input(f"formState.{name}", url, work / name, max_bytes)
            for name, url, max_bytes in wanted
        }

    def _probe(self, model: jobs_pb2.Model.ValueType, inputs: dict[str, Input]) -> list[float]:
        """Check every input cheaply and return the durations billing prices."""
        limits = self.settings.limits
        for name in ("image", "mask_image"):
            if name in inputs:
                probe_image(inputs[name].path, max_pixels_side=limits.max_image_side)
        if model == jobs_pb2.MODEL_LIPSYNC_VIDEO:
            probe_video(inputs["video"].path, max_duration_s=limits.max_duration_s)
        names = ("left_audio", "right_audio") if "left_audio" in inputs else ("audio",)
        return [
            probe_audio(inputs[name].path, max_duration_s=limits.max_duration_s).duration_s
            for name in names
        ]

    async def _render(
        self, request: events_pb2.JobRequested, work: Path
    ) -> events_pb2.JobCompleted:
        form = request.form_state
        clock = Stopwatch()
        inputs = self._inputs(request.model, form, work)
        await asyncio.gather(
            *(
                self._fetch(item.field, item.url, item.path, item.max_bytes)
                for item in inputs.values()
            )
        )
        clock.lap("download")
        try:
            durations = self._probe(request.model, inputs)
        except MediaError as exc:
            raise JobFailure(exc.user_message) from None
        clock.lap("probe")

        resolution = form.resolution or "480p"
        reserve = await self._reserve(request, resolution, durations)
        clock.lap("reserve")

        out_path = work / "out.mp4"
        try:
            result = await asyncio.to_thread(self._call_engine, request, inputs, out_path)
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

    def _call_engine(
        self, request: events_pb2.JobRequested, inputs: dict[str, Input], out_path: Path
    ) -> RenderResult:
        """The engine call for the job's model (runs in a worker thread)."""
        form = request.form_state
        height = HEIGHTS[form.resolution or "480p"]
        seed = form.seed if form.HasField("seed") and form.seed >= 0 else None
        mask = str(inputs["mask_image"].path) if "mask_image" in inputs else None
        # formState.prompt is accepted and ignored by the built-in engine (CAPABILITIES.md).
        if request.model == jobs_pb2.MODEL_LIPSYNC_VIDEO:
            return self.engine.render_video(
                str(inputs["video"].path),
                str(inputs["audio"].path),
                str(out_path),
                height=height,
                seed=seed,
                mask_path=mask,
            )
        if request.model == jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI:
            return self.engine.render_multi(
                str(inputs["image"].path),
                str(inputs["left_audio"].path),
                str(inputs["right_audio"].path),
                str(out_path),
                order=ORDERS[form.order],
                height=height,
                seed=seed,
                mask_path=mask,
            )
        return self.engine.render_image(
            str(inputs["image"].path),
            str(inputs["audio"].path),
            str(out_path),
            height=height,
            seed=seed,
            mask_path=mask,
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
