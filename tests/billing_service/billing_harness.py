"""A BillingService on a real gRPC server over a SQLite ledger, for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from billing_service.ledger import Ledger
from billing_service.packs import DEFAULT_PACKS, parse_packs
from billing_service.servicer import BillingServicer
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2
from tests.job_specs import image_spec


@dataclass
class BillingHarness:
    stub: billing_pb2_grpc.BillingServiceAsyncStub
    ledger: Ledger
    addr: str


@asynccontextmanager
async def open_ledger(directory: Path) -> AsyncIterator[Ledger]:
    ledger = Ledger(f"sqlite:///{directory / 'billing.db'}")
    await ledger.open()
    try:
        yield ledger
    finally:
        await ledger.close()


@asynccontextmanager
async def running_billing(directory: Path) -> AsyncIterator[BillingHarness]:
    async with open_ledger(directory) as ledger:
        server = grpc.aio.server()
        billing_pb2_grpc.add_BillingServiceServicer_to_server(
            BillingServicer(ledger, parse_packs(DEFAULT_PACKS)), server
        )
        addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        try:
            async with grpc.aio.insecure_channel(addr) as channel:
                yield BillingHarness(billing_pb2_grpc.BillingServiceStub(channel), ledger, addr)
        finally:
            await server.stop(None)


def image_usage(
    seconds: float, resolution: jobs_pb2.Resolution.ValueType = jobs_pb2.RESOLUTION_480P
) -> billing_pb2.Usage:
    return billing_pb2.Usage(spec=image_spec(resolution=resolution), duration_seconds=[seconds])
