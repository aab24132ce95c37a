"""Bearer API-key authentication through the auth service, briefly cached.

Every refusal is the same 401, whatever the reason, so a caller learns nothing
about which keys exist. Successes are cached for a fraction of a second: enough
to spare the auth service a call per request under load, short enough that a
revoked key is refused within a second.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from fastapi import Request

from gateway.clients import RPC_TIMEOUT_S, rpc_problem
from gateway.problems import Problem
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc

# Longer than any real key; refusing early keeps junk away from the auth service.
MAX_CREDENTIAL_CHARS = 512
# Bounds memory under a flood of distinct valid keys; the oldest entry goes first.
MAX_CACHE_ENTRIES = 10_000
_REFUSED = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    account_id: str
    key_id: str


def unauthorized() -> Problem:
    return Problem(
        401,
        "unauthorized",
        "a valid API key is required: Authorization: Bearer <key>",
        headers={"WWW-Authenticate": "Bearer"},
    )


def bearer_credential(header: str | None) -> str:
    """The credential of an `Authorization: Bearer <credential>` header, else 401."""
    if not header:
        raise unauthorized()
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_CREDENTIAL_CHARS:
        raise unauthorized()
    if not all(0x21 <= ord(ch) <= 0x7E for ch in credential):
        raise unauthorized()
    return credential


class Authenticator:
    def __init__(
        self,
        stub: auth_pb2_grpc.AuthServiceAsyncStub,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = stub
        self._cache_s = cache_s
        self._clock = clock
        # sha256 of the credential -> (principal, expiry); the clear key is never kept.
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def __call__(self, request: Request) -> Principal:
        """FastAPI dependency: the principal of the request, else 401 or 503."""
        return await self.authenticate(request.headers.get("authorization"))

    async def authenticate(self, header: str | None) -> Principal:
        credential = bearer_credential(header)
        digest = hashlib.sha256(credential.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            principal, expires = cached
            if now < expires:
                return principal
            del self._cache[digest]

        try:
            response = await self._stub.Authenticate(
                auth_pb2.AuthenticateRequest(credential=credential), timeout=RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _REFUSED:
                raise unauthorized() from None
            raise rpc_problem("auth", error) from None
        if not response.account_id:
            raise unauthorized()
        principal = Principal(account_id=response.account_id, key_id=response.key_id)
        if self._cache_s > 0:
            self._cache[digest] = (principal, now + self._cache_s)
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return principal
