"""The InferenceService gRPC API: what this worker runs, how busy it is, input durations."""

from __future__ import annotations

import grpc

from inference_service.engine import LipsyncEngine
from inference_service.failures import JobFailure
from inference_service.pipeline import Pipeline
from inference_service.worker import Worker
from lipsync.inference.v1 import inference_pb2, inference_pb2_grpc
from lipsync_common.job_spec import MODEL_NAMES


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(
        self, engine_name: str, engine: LipsyncEngine, worker: Worker, pipeline: Pipeline
    ) -> None:
        self.engine_name = engine_name
        self.engine = engine
        self.worker = worker
        self.pipeline = pipeline

    async def GetEngineInfo(
        self, request: inference_pb2.GetEngineInfoRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.GetEngineInfoResponse:
        # The engine's capabilities (what it does with a prompt, the TorchScript contract)
        # are documented in inference_service/engine/CAPABILITIES.md.
        return inference_pb2.GetEngineInfoResponse(
            engine=self.engine_name,
            device=self.engine.device,
            models=MODEL_NAMES,
            jobs_in_flight=self.worker.in_flight,
            jobs_finished=self.worker.finished,
        )

    async def ProbeDurations(
        self, request: inference_pb2.ProbeDurationsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ProbeDurationsResponse:
        try:
            durations = await self.pipeline.probe_durations(request.spec)
        except JobFailure as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return inference_pb2.ProbeDurationsResponse(duration_seconds=durations)
