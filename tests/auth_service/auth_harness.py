"""An AuthService on a real gRPC server over a SQLite file, for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from argon2 import PasswordHasher

from auth_service.passwords import Passwords
from auth_service.servicer import AuthServicer
from auth_service.settings import AuthSettings
from auth_service.store import AuthStore
from lipsync.auth.v1 import auth_pb2_grpc

PEPPER = b"test-pepper"
# The cheapest argon2id parameters: the tests check behaviour, not hardness.
FAST_PASSWORDS = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class AuthHarness:
    stub: auth_pb2_grpc.AuthServiceAsyncStub
    store: AuthStore
    db_path: Path
    addr: str


@asynccontextmanager
async def running_auth(
    directory: Path, settings: AuthSettings | None = None
) -> AsyncIterator[AuthHarness]:
    db_path = directory / "auth.db"
    store = AuthStore(f"sqlite:///{db_path}")
    await store.open()
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(store, PEPPER, settings, Passwords(FAST_PASSWORDS)), server
    )
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        async with grpc.aio.insecure_channel(addr) as channel:
            yield AuthHarness(auth_pb2_grpc.AuthServiceStub(channel), store, db_path, addr)
    finally:
        await server.stop(None)
        await store.close()
