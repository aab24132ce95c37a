"""Bearer authentication through the auth service, briefly cached, rate limited.

Two kinds of credential reach the API: API keys (`sk_...`, jobs, balance and
usage) and session tokens from login (`ses_...`, the account endpoints). A
credential whose checksum does not match is refused here, without a call.

Every refusal is the same 401, whatever the reason, so a caller learns nothing
about which keys exist. Successes are cached for a fraction of a second: enough
to spare the auth service a call per request under load, short enough that a
revoked key is refused within a second on every replica. The replica that
handles a revocation or a logout forgets the credential at once.

A valid credential of the wrong kind is a 403, not a 401: the caller is known,
the credential simply does not grant that call (an API key cannot manage keys;
a session cannot run jobs).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from fastapi import Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerScheme
from fastapi.security.base import SecurityBase

from gateway.clients import RPC_TIMEOUT_S, rpc_problem
from gateway.problems import Problem
from gateway.ratelimit import RateLimiter
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc
from lipsync_common.credentials import is_well_formed

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


KEY = "key"
SESSION = "session"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, and with which kind of credential."""

    account_id: str
    key_id: str
    kind: str = KEY
    session_id: str = ""

    @property
    def credential_id(self) -> str:
        """A public name of the credential: what rate limits count by."""
        return self.key_id if self.kind == KEY else self.session_id


def unauthorized() -> Problem:
    return Problem(
        401,
        "unauthorized",
        "a valid API key is required: Authorization: Bearer <key>",
        headers={"WWW-Authenticate": "Bearer"},
    )


def api_key_required() -> Problem:
    return Problem(403, "api_key_required", "this call needs an API key, not a session token")


def session_required() -> Problem:
    return Problem(
        403,
        "session_required",
        "this call needs a session token from POST /api/v1/auth/login, not an API key",
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


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


# The scheme in the OpenAPI document; every authenticated route names it.
SCHEME_NAME = "ApiKey"
SCHEME = HTTPBearerScheme(
    description="An API key: `Authorization: Bearer sk_<keyid>_<secret>`, or, where a route"
    " says so, a session token from `POST /api/v1/auth/login`."
)


class Credential(SecurityBase):
    """A FastAPI security dependency that both documents the bearer scheme and checks it.

    One dependency per request instead of a documentation-only HTTPBearer plus
    the check: FastAPI resolves each dependency on every request.
    """

    def __init__(self, check: Callable[[Request], Awaitable[Principal]]) -> None:
        self.model = SCHEME
        self.scheme_name = SCHEME_NAME
        self._check = check

    async def __call__(self, request: Request) -> Principal:
        return await self._check(request)


class Authenticator:
    def __init__(
        self,
        stub: auth_pb2_grpc.AuthServiceAsyncStub,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._stub = stub
        self._cache_s = cache_s
        self._clock = clock
        self._limiter = limiter
        # sha256 of the credential -> (principal, expiry); the clear key is never kept.
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        # sha256 of the credential -> the auth_service call checking it now.
        self._checks: dict[str, asyncio.Future[Principal]] = {}
        # The route dependencies: any credential, an API key only, a session only.
        self.any_credential = Credential(self.__call__)
        self.key_only = Credential(self.api_key)
        self.session_only = Credential(self.session)

    async def __call__(self, request: Request) -> Principal:
        """FastAPI dependency: the principal of the request, else 401, 429 or 503."""
        principal = await self.authenticate(request.headers.get("authorization"))
        if self._limiter is not None:
            self._limiter.check(principal.credential_id)
        return principal

    async def api_key(self, request: Request) -> Principal:
        """FastAPI dependency for calls that take an API key only."""
        principal = await self(request)
        if principal.kind != KEY:
            raise api_key_required()
        return principal

    async def session(self, request: Request) -> Principal:
        """FastAPI dependency for the account endpoints, which take a session only."""
        principal = await self(request)
        if principal.kind != SESSION:
            raise session_required()
        return principal

    def forget_credential(self, credential: str) -> None:
        """Drop a credential from this replica's cache (after a logout)."""
        self._cache.pop(_digest(credential), None)

    def forget_key(self, key_id: str) -> None:
        """Drop every cached use of a key from this replica (after a revocation)."""
        for digest in [d for d, (p, _) in self._cache.items() if p.key_id == key_id]:
            del self._cache[digest]

    async def authenticate(self, header: str | None) -> Principal:
        credential = bearer_credential(header)
        # Only well-formed credentials are cached, so a hit needs no checksum.
        digest = _digest(credential)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            principal, expires = cached
            if now < expires:
                return principal
            del self._cache[digest]
        if not is_well_formed(credential):
            raise unauthorized()
        # One check per credential at a time: when a busy key's cache entry
        # expires, its concurrent requests share one call to auth_service
        # instead of each making its own.
        check = self._checks.get(digest)
        if check is None:
            check = asyncio.ensure_future(self._check(credential, digest, now))
            self._checks[digest] = check
            check.add_done_callback(lambda _: self._checks.pop(digest, None))
        return await asyncio.shield(check)

    async def _check(self, credential: str, digest: str, now: float) -> Principal:
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
        if response.kind == auth_pb2.CREDENTIAL_KIND_SESSION:
            principal = Principal(
                account_id=response.account_id,
                key_id="",
                kind=SESSION,
                session_id=response.session_id,
            )
        else:
            principal = Principal(account_id=response.account_id, key_id=response.key_id)
        if self._cache_s > 0:
            self._cache[digest] = (principal, now + self._cache_s)
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return principal
