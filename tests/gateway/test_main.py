"""`python -m gateway` serves, answers readiness, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

from tests.gateway.conftest import FakeStack


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


async def test_serves_until_sigterm(stack: FakeStack, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LIPSYNC_HTTP_ADDR": f"127.0.0.1:{port}",
        "LIPSYNC_DATA_DIR": str(tmp_path),
        "LIPSYNC_AUTH_ADDR": f"127.0.0.1:{stack.ports['auth']}",
        "LIPSYNC_BILLING_ADDR": f"127.0.0.1:{stack.ports['billing']}",
        "LIPSYNC_JOBS_ADDR": f"127.0.0.1:{stack.ports['jobs']}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
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
