"""The InferenceService gRPC API: what this worker runs and how busy it is."""

from __future__ import annotations

import grpc

from inference_service.engine import LipsyncEngine
from inference_service.worker import Worker
from lipsync.inference.v1 import inference_pb2, inference_pb2_grpc


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, engine_name: str, engine: LipsyncEngine, worker: Worker) -> None:
        self.engine_name = engine_name
        self.engine = engine
        self.worker = worker

    async def GetEngineInfo(
        self, request: inference_pb2.GetEngineInfoRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.GetEngineInfoResponse:
        return inference_pb2.GetEngineInfoResponse(
            engine=self.engine_name,
            device=self.engine.device,
            models=["lipsync-image"],
            jobs_in_flight=self.worker.in_flight,
            jobs_finished=self.worker.finished,
        )
