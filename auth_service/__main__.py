"""`python -m auth_service`: serve AuthService until SIGTERM."""

from __future__ import annotations

import asyncio

import grpc

from auth_service import keys
from auth_service.servicer import AuthServicer
from auth_service.settings import AuthSettings
from auth_service.store import AuthStore
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc
from lipsync_common.config import ServerSettings, database_url
from lipsync_common.grpc_server import run_grpc_service
from lipsync_common.logs import setup_logging

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


async def main() -> None:
    setup_logging("auth_service")
    store = AuthStore(database_url("auth"))
    servicer = AuthServicer(store, keys.load_pepper(), AuthSettings.from_env())

    def register(server: grpc.aio.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)

    await run_grpc_service(
        ServerSettings.from_env("auth"),
        [SERVICE_NAME],
        register,
        start=store.open,
        stop=store.close,
    )


if __name__ == "__main__":
    asyncio.run(main())
