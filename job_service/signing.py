"""Standard Webhooks signatures, with each account's secret from the auth service.

    webhook-signature: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>

where `key` is the base64-decoded part of the account's `whsec_...` secret
(https://www.standardwebhooks.com). Secrets are cached for a short while, so a
burst of deliveries costs one auth call per account, and a rotation takes
effect within `SECRET_CACHE_S`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import grpc

from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc

if TYPE_CHECKING:
    from lipsync.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub

SECRET_PREFIX = "whsec_"
SECRET_CACHE_S = 30.0
RPC_TIMEOUT_S = 5.0
# Past this many cached accounts the cache starts over; it refills on demand.
MAX_CACHED_SECRETS = 10_000


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any `v1,` signature of a header matches; what receivers do."""
    expected = signature(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, part) for part in header.split())


class SecretSource:
    """Each account's signing secret, read from AuthService and cached briefly."""

    def __init__(
        self, channel: grpc.aio.Channel, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # grpc ships no type hints, so mypy cannot pick the stub's aio overload.
        self._stub = cast("AuthServiceAsyncStub", auth_pb2_grpc.AuthServiceStub(channel))
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    async def secret(self, account_id: str) -> str:
        """The account's secret; raises grpc.aio.AioRpcError when auth cannot say."""
        now = self._clock()
        cached = self._cache.get(account_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        response = await self._stub.GetWebhookSecret(
            auth_pb2.GetWebhookSecretRequest(account_id=account_id), timeout=RPC_TIMEOUT_S
        )
        if len(self._cache) >= MAX_CACHED_SECRETS:
            self._cache.clear()
        self._cache[account_id] = (response.secret, now + SECRET_CACHE_S)
        return response.secret
