"""Refuse URLs that point into our own network (SSRF protection).

Workers download user-supplied URLs and job_service POSTs to user-supplied
webhooks; both must not be turned against loopback, link-local (cloud
metadata) or private addresses unless the operator allows it for development
(`LIPSYNC_ALLOW_PRIVATE_URLS=true`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeURLError(ValueError):
    """The URL is not one we may fetch; the message is safe to show a user."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, allow_private: bool, schemes: tuple[str, ...]) -> None:
    """Raise UnsafeURLError unless `url` has an allowed scheme and a public host."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise UnsafeURLError(f"{url!r} is not an {' or '.join(schemes)} URL")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
        )
    except socket.gaierror:
        raise UnsafeURLError(f"host {parts.hostname!r} could not be resolved") from None
    for info in infos:
        if not _is_public(str(info[4][0])):
            raise UnsafeURLError(
                f"host {parts.hostname!r} resolves to a private or local address, "
                "which is not allowed"
            )
