"""`make bench-api`: the gateway's speed, against a bare FastAPI endpoint.

One run on this machine measures, with Debian's `wrk` (or, when it is not
installed, the small async load generator below):

* the real stack (`running_stack`: every service a process, a real
  nats-server): `GET /api/v1/jobs/{id}` of a completed job (its fullest JSON;
  the gateway keeps an ended job's JSON, gateway/ended_jobs.py) at 8 and 32
  connections, the same for a job still processing (read from job_service on
  every request) at 32, and `POST /api/v1/lipsync-image` at 32 connections
  with the inference worker paused (SIGSTOP), so rendering takes no CPU and
  jobs only queue;
* a bare FastAPI app started here, in its own process and with the gateway's
  uvicorn and garbage-collector settings, answering the same paths with the same JSON and nothing
  else (no auth, no gRPC, no validation).

It prints the ratios stack/bare and the targets of issue 8, and writes
`bench-report/api.json`. Rate limiting is OFF for the run
(`LIPSYNC_RATE_LIMIT_PER_MIN=0`), and so is the cap on jobs in processing
(`LIPSYNC_MAX_PROCESSING_JOBS=0`): a bench key would otherwise be throttled
after 120 requests; this measures speed, not policy.

`python -m tests.api_bench bare <addr> <job.json>` is the bare app itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.__main__ import server_config
from lipsync_common.devstack import wait_for_port
from tests.bench_report import write_report
from tests.integration.harness import (
    MediaHost,
    bearer,
    ctl,
    free_port,
    running_stack,
    stack_env,
    wait_until_finished,
)
from tests.media_fixtures import portrait_path, write_speech_wav

DURATION_S = float(os.environ.get("API_BENCH_DURATION_S", "10"))
WARMUP_S = 2.0
JOB_PATH = "/api/v1/jobs/{id}"
SUBMIT_PATH = "/api/v1/lipsync-image"
# Issue 8's targets on a 2-core machine.
TARGETS = {
    "get_32_ratio_min": 0.6,
    "get_8_p99_ms_max": 25.0,
    "submit_32_per_s_min": 500.0,
    "submit_32_p99_ms_max": 100.0,
}


@dataclass(frozen=True)
class Load:
    """One load: what is sent, over how many connections."""

    url: str
    connections: int
    method: str = "GET"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _wrk(load: Load, duration_s: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"wrk.method = {json.dumps(load.method)}\n")
        script.write(f"wrk.body = {json.dumps(load.body.decode())}\n")
        for name, value in load.headers:
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    try:
        argv = ["wrk", "-t2", f"-c{load.connections}", f"-d{duration_s:.0f}s", "--latency"]
        output = subprocess.run(
            [*argv, "-s", script.name, load.url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(latency["50"]),
        "p90_ms": _ms(latency["90"]),
        "p99_ms": _ms(latency["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


async def _python_load(load: Load, duration_s: float) -> dict[str, Any]:
    """A keep-alive HTTP/1.1 load generator for machines without wrk."""
    parts = urlsplit(load.url)
    head = f"{load.method} {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in load.headers)
    request = (head + f"Content-Length: {len(load.body)}\r\n\r\n").encode() + load.body
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + duration_s

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            failures += not status_line.split()[1].startswith(b"2")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(load.connections)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 2)

    return {
        "requests_per_s": round(len(ordered) / wall, 1),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "non_2xx": failures,
    }


def measure(load: Load) -> dict[str, Any]:
    """Warm up, then load for DURATION_S; requests per second and latency percentiles."""
    if shutil.which("wrk"):
        _wrk(load, WARMUP_S)
        return {"tool": "wrk", "connections": load.connections, **_wrk(load, DURATION_S)}
    asyncio.run(_python_load(load, WARMUP_S))
    result = asyncio.run(_python_load(load, DURATION_S))
    return {"tool": "python", "connections": load.connections, **result}


@contextmanager
def paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def bare_app(job: dict[str, Any], work: Path) -> Iterator[str]:
    """The bare FastAPI app in its own process; yields its base URL."""
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job))
    addr = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.api_bench", "bare", addr, str(job_file)]
    )
    try:
        host, port = addr.split(":")
        wait_for_port(host, int(port), 30)
        yield f"http://{addr}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def serve_bare(addr: str, job_file: str) -> None:
    """The same paths and JSON as the gateway, and nothing else."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    job = json.loads(Path(job_file).read_text())
    app = FastAPI()

    @app.get(JOB_PATH)
    async def get_job(id: str) -> JSONResponse:
        return JSONResponse(job, headers={"Cache-Control": "no-store"})

    @app.post(SUBMIT_PATH)
    async def submit() -> JSONResponse:
        return JSONResponse(
            {"id": job["id"], "status": "processing"},
            status_code=202,
            headers={"Location": f"/api/v1/jobs/{job['id']}"},
        )

    from gateway.__main__ import run as run_loop
    from lipsync_common.heap import settle_after_startup

    config = server_config(app, addr, 1.0)
    # The same collector settings as the gateway (lipsync_common/heap.py).
    settle_after_startup()
    run_loop(uvicorn.Server(config).serve())


def _ratio(stack: dict[str, Any], bare: dict[str, Any]) -> float:
    return round(stack["requests_per_s"] / bare["requests_per_s"], 3)


def run(work: Path) -> dict[str, Any]:
    media_dir = work / "media"
    media_dir.mkdir(parents=True)
    (media_dir / "face.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(media_dir / "voice.wav", 3.0)
    media = MediaHost(media_dir)
    env = stack_env(work / "stack")
    env.update(
        {
            "LIPSYNC_RATE_LIMIT_PER_MIN": "0",
            "LIPSYNC_MAX_PROCESSING_JOBS": "0",
            "LIPSYNC_LOG_LEVEL": "warning",
        }
    )
    body = {"formState": {"image": f"{media.url}/face.jpg", "audio": f"{media.url}/voice.wav"}}
    raw_body = json.dumps(body).encode()
    try:
        with running_stack(work / "stack", env) as stack:
            account = ctl(stack.env, "account", "create", "--email", "bench@example.com")
            key = ctl(stack.env, "key", "create", "--account", account["account_id"])["key"]
            ctl(stack.env, "credits", "grant", "--account", account["account_id"],
                "--amount", "1000000000", "--reason", "bench")  # fmt: skip
            auth = tuple(bearer(key).items())
            json_headers = (*auth, ("Content-Type", "application/json"))
            with httpx.Client(base_url=stack.http_url) as client:
                created = client.post(SUBMIT_PATH, content=raw_body, headers=dict(json_headers))
                created.raise_for_status()
                # A completed job: its JSON is the fullest, its output URL signed per read.
                job = wait_until_finished(client, created.json()["id"], key, 300)
            assert job["status"] == "completed", job
            job_path = JOB_PATH.format(id=job["id"])
            worker = dict(stack.children)["inference_service"]
            with paused(worker.pid):
                # A job that stays processing while the worker is paused: read
                # from job_service on every request (an ended one is cached).
                with httpx.Client(base_url=stack.http_url) as client:
                    running = client.post(SUBMIT_PATH, content=raw_body, headers=dict(json_headers))
                running_path = JOB_PATH.format(id=running.json()["id"])
                stack_results = {
                    "get_8": measure(Load(stack.http_url + job_path, 8, headers=auth)),
                    "get_32": measure(Load(stack.http_url + job_path, 32, headers=auth)),
                    "get_processing_32": measure(
                        Load(stack.http_url + running_path, 32, headers=auth)
                    ),
                    "submit_32": measure(
                        Load(stack.http_url + SUBMIT_PATH, 32, "POST", raw_body, json_headers)
                    ),
                }
        with bare_app(job, work) as bare_url:
            bare_results = {
                "get_8": measure(Load(bare_url + job_path, 8, headers=auth)),
                "get_32": measure(Load(bare_url + job_path, 32, headers=auth)),
                "get_processing_32": measure(Load(bare_url + job_path, 32, headers=auth)),
                "submit_32": measure(
                    Load(bare_url + SUBMIT_PATH, 32, "POST", raw_body, json_headers)
                ),
            }
    finally:
        media.close()
    ratios = {name: _ratio(stack_results[name], bare_results[name]) for name in stack_results}
    checks = {
        "get_32_ratio_min": ratios["get_32"] >= TARGETS["get_32_ratio_min"],
        "get_8_p99_ms_max": stack_results["get_8"]["p99_ms"] <= TARGETS["get_8_p99_ms_max"],
        "submit_32_per_s_min": stack_results["submit_32"]["requests_per_s"]
        >= TARGETS["submit_32_per_s_min"],
        "submit_32_p99_ms_max": stack_results["submit_32"]["p99_ms"]
        <= TARGETS["submit_32_p99_ms_max"],
    }
    return {
        "cpus": os.cpu_count(),
        "duration_s": DURATION_S,
        "rate_limit_per_min": 0,
        "note": "rate limiting and the processing cap are off for the run; worker paused",
        "stack": stack_results,
        "bare": bare_results,
        "ratios_stack_over_bare": ratios,
        "targets": TARGETS,
        "targets_met": checks,
    }


def main() -> None:
    if sys.argv[1:2] == ["bare"]:
        serve_bare(sys.argv[2], sys.argv[3])
        return
    print("api bench: rate limiting (LIPSYNC_RATE_LIMIT_PER_MIN) is 0 for this run", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = run(Path(tmp))
    write_report("api", report)
    for name, ratio in report["ratios_stack_over_bare"].items():
        stack = report["stack"][name]
        print(
            f"{name:17} stack {stack['requests_per_s']:8.1f}/s p99 {stack['p99_ms']:6.1f} ms"
            f"  bare {report['bare'][name]['requests_per_s']:8.1f}/s  ratio {ratio:.2f}"
        )
    for target, met in report["targets_met"].items():
        print(f"target {target} {report['targets'][target]}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
