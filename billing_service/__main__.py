"""`python -m billing_service`: serve BillingService and settle jobs from events."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from billing_service.checkout import Checkout, StripeSettings
from billing_service.events import EventConsumer
from billing_service.ledger import Ledger
from billing_service.packs import load_packs
from billing_service.servicer import BillingServicer
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync_common.config import ServerSettings, database_url, nats_url
from lipsync_common.grpc_server import run_grpc_service
from lipsync_common.jetstream import connect, ensure_streams
from lipsync_common.logs import setup_logging

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


async def main() -> None:
    setup_logging("billing_service")
    ledger = Ledger(database_url("billing"))
    nc, js = await connect(nats_url(), "billing-service")
    consumer = EventConsumer(js, ledger)
    packs = load_packs()
    checkout = Checkout(StripeSettings.from_env(), ledger, packs)
    servicer = BillingServicer(ledger, packs, checkout)

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    async def start() -> None:
        await ledger.open()
        await ensure_streams(js)
        await consumer.start()

    async def stop() -> None:
        # Events first: a message being handled still needs the ledger.
        await consumer.stop()
        with contextlib.suppress(Exception):
            await nc.drain()
        await checkout.close()
        await ledger.close()

    await run_grpc_service(
        ServerSettings.from_env("billing"), [SERVICE_NAME], register, start=start, stop=stop
    )


if __name__ == "__main__":
    asyncio.run(main())
