"""What the integration tests run against: the real stack, a media host, the CLI.

`running_stack` starts nats-server and all five services as separate
processes on free ports, exactly as `make run` does. `MediaHost` is a local
HTTP server standing in for the public internet: it serves the input media
and records the webhooks it receives.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from lipsync_common.devstack import Stack


class QuietHTTPServer(ThreadingHTTPServer):
    """A test server that prints nothing when a client hangs up first.

    The stack's workers drop connections on purpose (cancel, deadlines); the
    default traceback on stderr would land in whatever a test captures, such
    as the CLI's JSON output read through `capsys`.
    """

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(data_dir: Path) -> dict[str, str]:
    http = f"127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIPSYNC_")}
    env.update(
        {
            "LIPSYNC_DATA_DIR": str(data_dir),
            "LIPSYNC_HTTP_ADDR": http,
            "LIPSYNC_PUBLIC_URL": f"http://{http}",
            "LIPSYNC_EMBEDDED_NATS_PORT": str(free_port()),
            # The gateway's /metrics port (only the gateway reads it).
            "LIPSYNC_GATEWAY_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            # The media host and webhook receiver of the tests live on loopback.
            "LIPSYNC_ALLOW_PRIVATE_URLS": "true",
            # Tests poll every 0.2 s, faster than any client should; the limit
            # itself is checked by test_accounts with a burst.
            "LIPSYNC_RATE_LIMIT_PER_MIN": "600",
            # test_concurrency keeps 100 jobs of one account in processing at once.
            "LIPSYNC_MAX_PROCESSING_JOBS": "200",
            "LIPSYNC_LOG_LEVEL": "info",
        }
    )
    for service in ("auth", "billing", "jobs", "inference"):
        env[f"LIPSYNC_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
    return env


@contextmanager
def running_stack(data_dir: Path, env: dict[str, str]) -> Iterator[Stack]:
    # Metrics ports must not collide with a `make run` on the same machine either.
    metrics = {
        name: {"LIPSYNC_METRICS_ADDR": f"127.0.0.1:{free_port()}"}
        for name in ("auth_service", "billing_service", "job_service", "inference_service")
    }
    stack = Stack(env, log_dir=data_dir / "logs", start_timeout_s=120, process_env=metrics)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


class MediaHost:
    """Serves files from a folder over HTTP and records POSTed webhooks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.webhooks: list[tuple[dict[str, str], dict[str, Any]]] = []
        # The exact bytes of each webhook by job id, to check signatures.
        self.webhook_bodies: dict[str, bytes] = {}
        self._received = threading.Condition()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = host.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                payload = json.loads(raw)
                with host._received:
                    host.webhook_bodies[str(payload.get("id"))] = raw
                    host.webhooks.append((dict(self.headers.items()), payload))
                    host._received.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_webhook(self, job_id: str, timeout_s: float) -> tuple[dict[str, str], dict]:
        deadline = time.monotonic() + timeout_s
        with self._received:
            while True:
                for headers, payload in self.webhooks:
                    if payload.get("id") == job_id:
                        return headers, payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no webhook for job {job_id}")
                self._received.wait(remaining)

    def close(self) -> None:
        self.server.shutdown()


def ctl(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run `lipsyncctl` as an operator would and parse its JSON output."""
    result = subprocess.run(
        [sys.executable, "-m", "lipsync_common.ctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def wait_until_finished(client: httpx.Client, job_id: str, key: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key))
        response.raise_for_status()
        job: dict = response.json()
        if job["status"] != "processing":
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still processing after {timeout_s} s")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
