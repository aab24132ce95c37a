"""Refuse URLs that point into our own network (SSRF protection).

Workers download user-supplied URLs and job_service POSTs to user-supplied
webhooks; both must not be turned against loopback, link-local (cloud
metadata) or private addresses unless the operator allows it for development
(`LIPSYNC_ALLOW_PRIVATE_URLS=true`).

`resolve_checked` resolves a host once and checks every address; the HTTP
transport of `lipsync_common.guarded_http` connects to exactly those
addresses, so a name cannot resolve to a public address for the check and to
a private one for the connection (DNS rebinding).

`parse_url` is the one reading of a URL: the gateway validates with it, and
the callers fetch what it returns, so a URL the HTTP client would refuse or
read differently is refused at the door instead of failing at delivery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
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


# IPv6 ranges that carry an IPv4 address in their last 32 bits, which is what a
# packet to them ends up reaching: IPv4-compatible (::a.b.c.d), NAT64's
# well-known prefix and SIIT's IPv4-translated form. (IPv4-mapped is read by
# `ipv4_mapped`, 6to4 by `sixtofour`.)
_EMBEDS_IPV4_LOW = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)
# Never connected to, whatever follows: NAT64's local-use prefix (RFC 8215,
# which a site may map anywhere, including its own network) and Teredo, whose
# tunnel endpoint no literal check can judge. Python counts both as global.
_REFUSED_V6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves a host and port to IP literals, in the order to try them."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for `host`, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """Whether `address` (an IP literal) is one the platform may connect to.

    Global unicast only; an IPv6 address that embeds an IPv4 one is judged by
    the IPv4 address it leads to, so `::7f00:1` or `64:ff9b::7f00:1` is
    loopback. Cloud metadata (169.254.169.254, fd00:ec2::254) is link-local
    or unique-local, so not global.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _REFUSED_V6):
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _EMBEDS_IPV4_LOW):
            embedded = ipaddress.IPv4Address(ip.packed[-4:])
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


async def resolve_checked(
    host: str, port: int, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """Resolve `host` once; the addresses to connect to, each one checked.

    Raises UnsafeURLError if any address is not public (unless `allow_private`),
    and OSError if the name cannot be resolved.
    """
    addresses = list(await resolver(host, port))
    if not addresses:
        raise socket.gaierror(f"no address for {host!r}")
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise UnsafeURLError(
                    f"host {host!r} resolves to a private or local address, which is not allowed"
                )
    return addresses
