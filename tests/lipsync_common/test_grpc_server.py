"""The gRPC bootstrap in a real child process: health, reflection, metrics, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.integration.harness import free_port

SERVICE = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from lipsync_common.config import ServerSettings
    from lipsync_common.grpc_server import run_grpc_service

    gate = pathlib.Path(sys.argv[1])

    async def start():
        # Readiness waits on this hook; the test releases it by creating a file.
        while not gate.exists():
            await asyncio.sleep(0.05)

    asyncio.run(run_grpc_service(
        ServerSettings.from_env("auth"), ["lipsync.auth.v1.AuthService"],
        lambda server: None, start=start))
    """
)


def health(addr: str) -> int:
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(100):
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                return int(status)
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError("server never answered")


def reflected_services(addr: str) -> set[str]:
    with grpc.insecure_channel(addr) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        return {s.name for s in reply.list_services_response.service}


def test_not_serving_until_started_then_serving_then_graceful_stop(tmp_path: object) -> None:
    addr = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"
    gate = os.path.join(str(tmp_path), "ready")
    env = {**os.environ, "LIPSYNC_GRPC_LISTEN": addr, "LIPSYNC_METRICS_ADDR": metrics}
    process = subprocess.Popen([sys.executable, "-c", SERVICE, gate], env=env)
    try:
        assert health(addr) == health_pb2.HealthCheckResponse.NOT_SERVING
        open(gate, "w").close()
        deadline = time.monotonic() + 10
        while health(addr) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert {"lipsync.auth.v1.AuthService", "grpc.health.v1.Health"} <= reflected_services(addr)
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
            body = response.read().decode()
        counted = 'lipsync_grpc_requests_total{code="OK",method="/grpc.health.v1.Health/Check"}'
        assert counted in body
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
