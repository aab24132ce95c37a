"""`python -m tests.store_bench`: the stores' speed on SQLite and on PostgreSQL.

Prints JSON with, per database:

* reserve latency (p50/p99 ms) through the real billing gRPC servicer on a
  real grpc.aio server, measured by its client: one call at a time, then 16
  clients at once, each reserve for its own job id on one account;
* submit throughput: jobs accepted per second through the gateway of the real
  stack (`running_stack`, every service a process, a real nats-server), N
  concurrent POSTs with httpx. The inference worker is paused (SIGSTOP) while
  it runs, so rendering takes no CPU from the measurement.

PostgreSQL is the server on 127.0.0.1:5432, one fresh database per service;
it is skipped, and the JSON says so, when unreachable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx

from billing_service.ledger import Ledger
from billing_service.servicer import BillingServicer
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2
from tests.bench_report import write_report
from tests.integration.harness import MediaHost, bearer, ctl, running_stack, stack_env
from tests.media_fixtures import portrait_path, write_speech_wav
from tests.stores.postgres import UNREACHABLE, PostgresDatabases, postgres_reachable

SEQUENTIAL_RESERVES = 500
CONCURRENT_CLIENTS = 16
CONCURRENT_RESERVES = 1000
SUBMITS = 400
SUBMIT_CONCURRENCY = 32


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def reserve_latency(url: str) -> dict[str, Any]:
    ledger = Ledger(url)
    await ledger.open()
    server = grpc.aio.server()
    billing_pb2_grpc.add_BillingServiceServicer_to_server(BillingServicer(ledger), server)
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    account = f"bench-{uuid.uuid4().hex[:8]}"
    usage = billing_pb2.Usage(
        spec=jobs_pb2.JobSpec(
            lipsync_image=jobs_pb2.LipsyncImageInputs(image="i", audio="a"),
            resolution=jobs_pb2.RESOLUTION_480P,
        ),
        duration_seconds=[5.0],
    )
    try:
        await ledger.grant(account, 10**12, "api", "bench")
        async with grpc.aio.insecure_channel(addr) as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)

            async def reserve() -> float:
                request = billing_pb2.ReserveRequest(
                    job_id=uuid.uuid4().hex, account_id=account, usage=usage
                )
                started = time.perf_counter()
                response = await stub.Reserve(request)
                elapsed = time.perf_counter() - started
                assert response.outcome == billing_pb2.RESERVE_OUTCOME_RESERVED, response
                return elapsed

            for _ in range(50):  # warm-up: connections, prepared statements
                await reserve()
            sequential = [await reserve() for _ in range(SEQUENTIAL_RESERVES)]

            async def client(count: int) -> list[float]:
                return [await reserve() for _ in range(count)]

            started = time.perf_counter()
            per_client = CONCURRENT_RESERVES // CONCURRENT_CLIENTS
            batches = await asyncio.gather(*(client(per_client) for _ in range(CONCURRENT_CLIENTS)))
            wall = time.perf_counter() - started
            concurrent = [sample for batch in batches for sample in batch]
        return {
            "through": "billing gRPC servicer on a grpc.aio server (client-side timing)",
            "sequential": {"calls": len(sequential), **_ms(sequential)},
            f"concurrent_{CONCURRENT_CLIENTS}_clients": {
                "calls": len(concurrent),
                **_ms(concurrent),
                "reserves_per_s": round(len(concurrent) / wall, 1),
            },
        }
    finally:
        await server.stop(None)
        await ledger.close()


@contextmanager
def paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def submit_throughput(work: Path, database_env: dict[str, str]) -> dict[str, Any]:
    media_dir = work / "media"
    media_dir.mkdir(parents=True)
    (media_dir / "face.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(media_dir / "voice.wav", 3.0)
    media = MediaHost(media_dir)
    env = stack_env(work / "stack")
    env.update(database_env)
    # Throughput, not policy: no per-key rate limit, no cap on jobs in processing.
    env.update({"LIPSYNC_RATE_LIMIT_PER_MIN": "0", "LIPSYNC_MAX_PROCESSING_JOBS": "0"})
    env["LIPSYNC_LOG_LEVEL"] = "warning"
    try:
        with running_stack(work / "stack", env) as stack:
            account_id = ctl(stack.env, "account", "create", "--email", "bench@example.com")[
                "account_id"
            ]
            key = ctl(stack.env, "key", "create", "--account", account_id)["key"]
            ctl(stack.env, "credits", "grant", "--account", account_id, "--amount", "10000000",
                "--reason", "bench")  # fmt: skip
            body = {
                "formState": {"image": f"{media.url}/face.jpg", "audio": f"{media.url}/voice.wav"}
            }
            worker = dict(stack.children)["inference_service"]
            with paused(worker.pid):
                return asyncio.run(_fire(stack.http_url, key, body))
    finally:
        media.close()


async def _fire(base_url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=SUBMIT_CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        statuses: list[int] = []
        latencies: list[float] = []

        async def post() -> None:
            started = time.perf_counter()
            response = await client.post("/api/v1/lipsync-image", json=body, headers=bearer(key))
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)

        for _ in range(20):  # warm-up
            await post()
        statuses.clear()
        latencies.clear()
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(SUBMITS):
            queue.put_nowait(None)

        async def sender() -> None:
            while not queue.empty():
                queue.get_nowait()
                await post()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(SUBMIT_CONCURRENCY)))
        wall = time.perf_counter() - started
    accepted = statuses.count(202)
    return {
        "requests": SUBMITS,
        "concurrency": SUBMIT_CONCURRENCY,
        "accepted": accepted,
        "other_statuses": sorted(set(statuses) - {202}),
        "accepted_per_s": round(accepted / wall, 1),
        "request_latency": _ms(latencies),
    }


def bench(database: str, new_url: Callable[[], str], work: Path) -> dict[str, Any]:
    reserve = asyncio.run(reserve_latency(new_url()))
    database_env = {
        f"LIPSYNC_{service}_DATABASE_URL": new_url() for service in ("AUTH", "BILLING", "JOBS")
    }
    submit = submit_throughput(work / database, database_env)
    return {"reserve_latency": reserve, "submit_throughput": submit}


def main() -> None:
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        counter = iter(range(100))
        report["sqlite"] = bench(
            "sqlite", lambda: f"sqlite:///{work / f'db-{next(counter)}.db'}", work
        )
        if postgres_reachable():
            databases = PostgresDatabases()
            try:
                report["postgres"] = bench("postgres", databases.create, work)
            finally:
                databases.drop_all()
        else:
            report["postgres"] = {"skipped": UNREACHABLE}
    write_report("stores", report)


if __name__ == "__main__":
    main()
