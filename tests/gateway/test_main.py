"""`python -m gateway` serves, answers readiness, and stops cleanly on SIGTERM.

It needs no NATS to start (job notices are heard once NATS is up), and with
NATS it answers a `Prefer: wait` read as soon as the job's `ended` notice comes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import httpx
import nats

from lipsync.jobs.v1 import jobs_pb2
from lipsync_common import notices
from tests.gateway.conftest import ACCOUNT, AUTH_HEADERS, FakeStack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_up(url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            if process.returncode is not None:
                raise AssertionError("the gateway exited during start-up")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not start")


def gateway_env(stack: FakeStack, tmp_path: Path, port: int, nats_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "LIPSYNC_HTTP_ADDR": f"127.0.0.1:{port}",
        "LIPSYNC_DATA_DIR": str(tmp_path),
        "LIPSYNC_AUTH_ADDR": f"127.0.0.1:{stack.ports['auth']}",
        "LIPSYNC_BILLING_ADDR": f"127.0.0.1:{stack.ports['billing']}",
        "LIPSYNC_JOBS_ADDR": f"127.0.0.1:{stack.ports['jobs']}",
        "LIPSYNC_NATS_URL": nats_url,
        "LIPSYNC_GATEWAY_METRICS_ADDR": f"127.0.0.1:{free_port()}",
    }


async def test_serves_until_sigterm(stack: FakeStack, tmp_path: Path) -> None:
    port = free_port()
    # Nothing listens there: NATS is down for the whole run.
    env = gateway_env(stack, tmp_path, port, f"nats://127.0.0.1:{free_port()}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            # Metrics on their own port, never on the API's (which an Ingress exposes).
            metrics = await http.get(f"http://{env['LIPSYNC_GATEWAY_METRICS_ADDR']}/metrics")
            on_api = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert ready.status_code == 200, ready.text
        assert metrics.status_code == 200 and "lipsync_http_requests_total" in metrics.text
        assert on_api.status_code == 404
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    lines = (await process.stderr.read()).decode().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, lines
    assert all(record["service"] == "gateway" for record in records)
    assert records[-1]["msg"] == "stopped"


async def test_a_waiting_read_is_answered_on_the_ended_notice(
    stack: FakeStack, tmp_path: Path, nats_server: str
) -> None:
    port = free_port()
    env = gateway_env(stack, tmp_path, port, nats_server)
    job = stack.jobs.add(
        jobs_pb2.Job(
            id=str(uuid.uuid4()), account_id=ACCOUNT, status=jobs_pb2.JOB_STATUS_PROCESSING
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    publisher = await nats.connect(nats_server)
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        async with httpx.AsyncClient(timeout=60) as http:
            headers = {**AUTH_HEADERS, "Prefer": "wait=30"}
            read = asyncio.create_task(
                http.get(f"http://127.0.0.1:{port}/api/v1/jobs/{job.id}", headers=headers)
            )
            started = asyncio.get_running_loop().time()
            while job.id not in stack.jobs.reads:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            job.status = jobs_pb2.JOB_STATUS_FAILED
            job.error = "no face found in image"
            # The gateway subscribes in the background: send until it has heard.
            while not read.done():
                await notices.publish(publisher, notices.ENDED, job.id)
                await asyncio.wait([read], timeout=0.2)
            response = await read
        assert asyncio.get_running_loop().time() - started < 20
        assert response.status_code == 200
        assert response.headers["preference-applied"] == "wait=30"
        assert response.json()["status"] == "failed"
    finally:
        await publisher.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 10)


async def test_sigterm_answers_waiting_reads_at_once(stack: FakeStack, tmp_path: Path) -> None:
    port = free_port()
    env = gateway_env(stack, tmp_path, port, f"nats://127.0.0.1:{free_port()}")
    env["LIPSYNC_SHUTDOWN_GRACE_S"] = "30"
    job = stack.jobs.add(
        jobs_pb2.Job(
            id=str(uuid.uuid4()), account_id=ACCOUNT, status=jobs_pb2.JOB_STATUS_PROCESSING
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        async with httpx.AsyncClient(timeout=60) as http:
            headers = {**AUTH_HEADERS, "Prefer": "wait=60"}
            read = asyncio.create_task(
                http.get(f"http://127.0.0.1:{port}/api/v1/jobs/{job.id}", headers=headers)
            )
            while job.id not in stack.jobs.reads:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            loop = asyncio.get_running_loop()
            stopping = loop.time()
            process.send_signal(signal.SIGTERM)
            response = await read
            # Answered as it is now, long before the wait or the grace period would end.
            assert loop.time() - stopping < 5
        assert response.status_code == 200
        assert response.json()["status"] == "processing"
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
