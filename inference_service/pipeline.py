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
from inference_service.job_inputs import JobInputs, MediaInput, job_inputs, render_options
from inference_service.media.errors import MediaError
from inference_service.media.probe import probe_audio, probe_image, probe_video
from inference_service.settings import WorkerSettings
from inference_service.storage import ResultStore
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import events_pb2, jobs_pb2

log = logging.getLogger(__name__)


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
        # The worker holds several jobs so that one slow download blocks no
        # other job, but renders queue for a slot, at most one per core.
        self._render_slots = asyncio.Semaphore(settings.render_slots)

    async def run(self, request: events_pb2.JobRequested) -> events_pb2.JobCompleted:
        """Render a job; raises JobFailure/MediaError for the user, others for retry."""
        plan = job_inputs(request.spec)
        work = self.settings.work_dir / request.job_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            return await self._render(request, plan, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def probe_durations(self, spec: jobs_pb2.JobSpec) -> list[float]:
        """Download only a request's priced audio inputs and return their durations.

        For estimates. Raises JobFailure with a user-facing message when one
        cannot be fetched or decoded.
        """
        plan = job_inputs(spec)
        work = self.settings.work_dir / f"probe-{uuid.uuid4().hex}"
        work.mkdir(parents=True)
        try:
            audio = [item for item in plan.media if item.name in plan.priced_audio]
            inputs = await self._fetch_all(audio, work)
            try:
                return await asyncio.to_thread(self._durations, plan, inputs)
            except MediaError as exc:
                raise JobFailure(exc.user_message) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _max_bytes(self, item: MediaInput) -> int:
        limits = self.settings.limits
        return {
            "image": limits.max_image_bytes,
            "audio": limits.max_audio_bytes,
            "video": limits.max_video_bytes,
        }[item.kind]

    async def _fetch_all(self, media: list[MediaInput], work: Path) -> dict[str, Input]:
        inputs = {
            item.name: Input(
                f"formState.{item.name}", item.url, work / item.name, self._max_bytes(item)
            )
            for item in media
        }
        await asyncio.gather(
            *(self._fetch(i.field, i.url, i.path, i.max_bytes) for i in inputs.values())
        )
        return inputs

    def _durations(self, plan: JobInputs, inputs: dict[str, Input]) -> list[float]:
        limit = self.settings.limits.max_duration_s
        return [
            probe_audio(inputs[name].path, max_duration_s=limit).duration_s
            for name in plan.priced_audio
        ]

    def _probe(self, plan: JobInputs, inputs: dict[str, Input]) -> list[float]:
        """Check every input cheaply and return the durations billing prices."""
        limits = self.settings.limits
        for item in plan.media:
            if item.kind == "image":
                probe_image(inputs[item.name].path, max_pixels_side=limits.max_image_side)
            elif item.kind == "video":
                probe_video(
                    inputs[item.name].path,
                    max_duration_s=limits.max_duration_s,
                    max_side=limits.max_video_side,
                    max_fps=limits.max_video_fps,
                )
        return self._durations(plan, inputs)

    async def _render(
        self, request: events_pb2.JobRequested, plan: JobInputs, work: Path
    ) -> events_pb2.JobCompleted:
        clock = Stopwatch()
        inputs = await self._fetch_all(list(plan.media), work)
        clock.lap("download")
        try:
            # In a thread: probing may demux a whole file, and the other jobs'
            # heartbeats must keep going meanwhile.
            durations = await asyncio.to_thread(self._probe, plan, inputs)
        except MediaError as exc:
            raise JobFailure(exc.user_message) from None
        clock.lap("probe")

        reserve = await self._reserve(request, durations)
        clock.lap("reserve")

        out_path = work / "out.mp4"
        async with self._render_slots:
            clock.lap("render_queue")
            try:
                result = await asyncio.to_thread(self._call_engine, request, plan, inputs, out_path)
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
        self,
        request: events_pb2.JobRequested,
        plan: JobInputs,
        inputs: dict[str, Input],
        out_path: Path,
    ) -> RenderResult:
        """The engine call for the job's model (runs in a worker thread)."""
        paths = {name: item.path for name, item in inputs.items()}
        return plan.render(self.engine, paths, out_path, render_options(request.spec, paths))

    async def _fetch(self, field_name: str, url: str, dest: Path, max_bytes: int) -> None:
        await download(
            self.http,
            field_name,
            url,
            dest,
            max_bytes,
            timeout_s=self.settings.limits.download_timeout_s,
        )

    async def _reserve(
        self, request: events_pb2.JobRequested, durations: list[float]
    ) -> billing_pb2.ReserveResponse:
        usage = billing_pb2.Usage(spec=request.spec, duration_seconds=durations)
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
