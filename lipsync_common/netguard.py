"""Refuse URLs that point into our own network (SSRF protection).

Workers download user-supplied URLs and job_service POSTs to user-supplied
webhooks; both must not be turned against loopback, link-local (cloud
metadata) or private addresses unless the operator allows it for development
(`LIPSYNC_ALLOW_PRIVATE_URLS=true`).

`parse_url` is the one reading of a URL: the gateway validates with it, and
the callers fetch what it returns, so a URL the HTTP client would refuse or
read differently is refused at the door instead of failing at delivery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

# Whitespace and control characters, which no URL we accept may contain.
_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# A label that resolvers read as a number (decimal, octal with a leading 0, or hex).
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeURLError(ValueError):
    """The URL is not one we may fetch; the message is safe to show a user."""


@dataclass(frozen=True)
class ParsedURL:
    """A URL as the HTTP client reads it."""

    # The normalised text (host lower-case and IDNA-encoded, path escaped).
    url: str
    scheme: str
    # ASCII; an IPv6 address without its brackets.
    host: str
    port: int


def parse_url(url: str, schemes: tuple[str, ...]) -> ParsedURL:
    """Read `url` as httpx will, or raise UnsafeURLError.

    Beyond what httpx refuses, a host that ends in a number must be a plain
    dotted quad: resolvers read `127.0.0.010`, `127.1` or `2130706433` as
    addresses (and disagree on how), which no literal check could judge.
    """
    if _CONTROL.search(url):
        raise UnsafeURLError("the URL contains whitespace or control characters")
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise UnsafeURLError(f"the URL is not valid: {exc}") from None
    if parsed.scheme not in schemes or not host:
        raise UnsafeURLError(f"the URL is not an {' or '.join(schemes)} URL")
    port = _DEFAULT_PORTS.get(parsed.scheme, 0) if parsed.port is None else parsed.port
    if not 0 < port < 65536:
        raise UnsafeURLError(f"port {port} is not a valid port")
    if ":" not in host and _NUMERIC_LABEL.fullmatch(host.removesuffix(".").rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeURLError(f"host {host!r} is not a valid IPv4 address") from None
    return ParsedURL(url=str(parsed), scheme=parsed.scheme, host=host, port=port)


def is_public_address(address: str) -> bool:
    """Whether `address` (an IP literal) is one the platform may connect to."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, allow_private: bool, schemes: tuple[str, ...]) -> ParsedURL:
    """`url` parsed, if it has an allowed scheme and a public host; else UnsafeURLError."""
    parsed = parse_url(url, schemes)
    if allow_private:
        return parsed
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, parsed.port, type=socket.SOCK_STREAM
        )
    except socket.gaierror:
        raise UnsafeURLError(f"host {parsed.host!r} could not be resolved") from None
    for info in infos:
        if not is_public_address(str(info[4][0])):
            raise UnsafeURLError(
                f"host {parsed.host!r} resolves to a private or local address, which is not allowed"
            )
    return parsed
