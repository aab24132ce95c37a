"""An httpx transport that connects only to addresses the URL guard checked.

Checking a URL's host and then letting the HTTP client resolve it again to
connect leaves a window in which the name can change (DNS rebinding): public
for the check, private for the connection. Here the resolution happens once,
inside the connection itself: `GuardedBackend.connect_tcp` resolves the host,
checks every address (`netguard.resolve_checked`) and opens the TCP connection
to a checked IP. The request keeps its URL, so the Host header, TLS SNI and
certificate verification are still for the hostname.

A refused address raises `netguard.UnsafeURLError` out of the request, before
any connection is attempted; a name that does not resolve is an
`httpx.ConnectError`, like any other failure to connect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpcore
import httpx

from lipsync_common.netguard import Resolver, resolve_checked, system_resolver

# httpx's own defaults.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks, and connects `inner` to the checked address."""

    def __init__(
        self,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            # Resolving is part of connecting, so it shares the connect timeout.
            async with asyncio.timeout(timeout):
                addresses = await resolve_checked(host, port, self.allow_private, self.resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host!r}: {exc}") from None
        # Every address is checked; try them in turn, as getaddrinfo's users do.
        for address in addresses[:-1]:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        return await self.inner.connect_tcp(
            addresses[-1], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # User URLs never name a socket path; nothing here may open one.
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, over a connection pool that uses `GuardedBackend`."""

    def __init__(
        self,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        *,
        inner: httpcore.AsyncNetworkBackend | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(limits=limits)
        # httpx offers no way to pass a network backend, so the pool that its
        # constructor built is replaced by the same one over ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private, resolver, inner),
        )
