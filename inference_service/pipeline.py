"""One job, start to finish: fetch, probe, reserve, render, store.

The pipeline knows nothing about NATS; the worker feeds it a `JobRequested`
and publishes what it returns. Anything the user can fix raises `JobFailure`
(or the engine's `MediaError`) and ends the job `failed` with nothing charged.

The worker also hands it the attempt's `Progress`, which the pipeline moves
from stage to stage (and the engine from frame to frame), and the job's
`CancelFlag`: every wait is raced against it and it is checked between steps,
so a canceled job raises `JobCanceled` within moments, wherever it is. A
render stops at its next batch of frames (the engine's callback raises), and
an output stored before the cancel was seen is deleted again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from inference_service.cancels import CancelFlag, JobCanceled
from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.engine.render_loop import FrameCallback
from inference_service.failures import JobFailure
from inference_service.fetch import copy_upload, download
from inference_service.job_inputs import JobInputs, MediaInput, job_inputs, render_options
from inference_service.media.errors import MediaError
from inference_service.media.probe import probe_audio, probe_image, probe_video
from inference_service.progress import DOWNLOADED_PERCENT, STORED_PERCENT, Progress
from inference_service.settings import WorkerSettings
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import events_pb2, jobs_pb2
from lipsync_common.results import result_key
from lipsync_common.storage import ObjectStore
from lipsync_common.uploads import upload_id_in, upload_store

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
        store: ObjectStore,
        uploads: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.billing = billing
        self.http = http
        self.store = store
        # Inputs that are uploads are read from here (inference_service/fetch.py).
        self.uploads = uploads if uploads is not None else upload_store(settings.uploads_folder())
        # The worker holds several jobs so that one slow download blocks no
        # other job, but renders queue for a slot, at most one per core.
        self._render_slots = asyncio.Semaphore(settings.render_slots)

    async def run(
        self,
        request: events_pb2.JobRequested,
        progress: Progress | None = None,
        cancel: CancelFlag | None = None,
    ) -> events_pb2.JobCompleted:
        """Render a job; raises JobFailure/MediaError for the user, JobCanceled once
        `cancel` is set, others for retry."""
        progress = progress or Progress(request.job_id, 1)
        cancel = cancel or CancelFlag()
        plan = job_inputs(request.spec)
        work = self.settings.work_dir / request.job_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            return await self._render(request, plan, work, progress, cancel)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def discard(self, output_key: str) -> None:
        """Delete a stored output after all: its job was canceled before `completed`."""
        self.store.delete(output_key)

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

    async def _fetch_all(
        self, media: list[MediaInput], work: Path, account_id: str = ""
    ) -> dict[str, Input]:
        inputs = {
            item.name: Input(
                f"formState.{item.name}", item.url, work / item.name, self._max_bytes(item)
            )
            for item in media
        }
        await asyncio.gather(
            *(self._fetch(i.field, i.url, i.path, i.max_bytes, account_id) for i in inputs.values())
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
        self,
        request: events_pb2.JobRequested,
        plan: JobInputs,
        work: Path,
        progress: Progress,
        cancel: CancelFlag,
    ) -> events_pb2.JobCompleted:
        clock = Stopwatch()
        progress.enter(jobs_pb2.JOB_STAGE_DOWNLOADING)
        inputs = await cancel.race(self._fetch_all(list(plan.media), work, request.account_id))
        progress.reach(DOWNLOADED_PERCENT)
        clock.lap("download")
        try:
            # In a thread: probing may demux a whole file, and the other jobs'
            # heartbeats must keep going meanwhile.
            durations = await cancel.race(asyncio.to_thread(self._probe, plan, inputs))
        except MediaError as exc:
            raise JobFailure(exc.user_message) from None
        clock.lap("probe")

        # Checked first so that a job canceled by now reserves nothing; a Reserve
        # cut short is harmless: billing releases the job on its `canceled` event,
        # and answers a later Reserve ALREADY_SETTLED.
        cancel.check()
        reserve = await cancel.race(self._reserve(request, durations))
        clock.lap("reserve")

        out_path = work / "out.mp4"
        async with self._render_slot(progress, cancel):
            clock.lap("render_queue")
            cancel.check()
            progress.enter(jobs_pb2.JOB_STAGE_RENDERING)
            on_frames = _frame_reports(progress, cancel)
            try:
                # Not raced: the slot is held until the thread stops, which a
                # cancel makes it do at the next batch (the callback raises).
                result = await asyncio.to_thread(
                    self._call_engine, request, plan, inputs, out_path, on_frames
                )
            except MediaError as exc:
                raise JobFailure(exc.user_message) from None
        clock.lap("inference")
        cancel.check()
        progress.enter(jobs_pb2.JOB_STAGE_FINISHING)
        # A thread: to an S3 bucket this is a multipart upload over the network.
        output_key = await asyncio.to_thread(self.store.put, result_key(request.job_id), out_path)
        if cancel.is_set():
            await asyncio.to_thread(self.discard, output_key)
            raise JobCanceled
        progress.reach(STORED_PERCENT)
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

    @asynccontextmanager
    async def _render_slot(self, progress: Progress, cancel: CancelFlag) -> AsyncIterator[None]:
        """Hold one of the worker's render slots; QUEUED while waiting for one."""
        if self._render_slots.locked():
            progress.enter(jobs_pb2.JOB_STAGE_QUEUED)
        await cancel.race(self._render_slots.acquire())
        try:
            yield
        finally:
            self._render_slots.release()

    def _call_engine(
        self,
        request: events_pb2.JobRequested,
        plan: JobInputs,
        inputs: dict[str, Input],
        out_path: Path,
        on_frames: FrameCallback,
    ) -> RenderResult:
        """The engine call for the job's model (runs in a worker thread)."""
        paths = {name: item.path for name, item in inputs.items()}
        options = render_options(request.spec, paths, on_frames)
        return plan.render(self.engine, paths, out_path, options)

    async def _fetch(
        self, field_name: str, url: str, dest: Path, max_bytes: int, account_id: str = ""
    ) -> None:
        upload_id = upload_id_in(url, self.settings.public_url)
        if upload_id is not None:
            await asyncio.to_thread(
                copy_upload, self.uploads, field_name, upload_id, dest, max_bytes, account_id
            )
            return
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


def _frame_reports(progress: Progress, cancel: CancelFlag) -> FrameCallback:
    """The engine's per-batch callback: stop a canceled render, else record its frames."""

    def on_frames(done: int, total: int) -> None:
        cancel.check()
        progress.frames(done, total)

    return on_frames
