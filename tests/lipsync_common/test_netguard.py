from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence

import httpcore
import httpx
import pytest

from lipsync_common.guarded_http import GuardedTransport
from lipsync_common.netguard import (
    ParsedURL,
    Resolver,
    UnsafeURLError,
    is_public_address,
    parse_url,
    resolve_checked,
)

SCHEMES = ("http", "https")

# Regression: issue 9, item 7. Every form of a non-global address, including
# IPv6 forms that embed an IPv4 one (`::7f00:1` and `64:ff9b::7f00:1` passed).
FORBIDDEN = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",  # CGNAT
    "169.254.169.254",  # cloud metadata (link-local)
    "169.254.1.1",
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.0.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "::ffff:0:7f00:1",  # IPv4-translated (SIIT)
    "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
    "64:ff9b::a00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::808:808",  # NAT64 local-use, whatever it embeds
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",
    "2002:c0a8:1::1",
    "2001::1",  # Teredo
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:db8::1",  # documentation
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_global_addresses_pass(address: str) -> None:
    assert is_public_address(address)


def static(answers: dict[str, list[str]]) -> Resolver:
    """A resolver that answers from `answers` and never asks DNS."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        return answers[host]

    return resolve


@pytest.mark.parametrize("address", FORBIDDEN)
async def test_a_name_resolving_to_any_non_global_address_is_refused(address: str) -> None:
    resolver = static({"evil.test": ["8.8.8.8", address]})
    with pytest.raises(UnsafeURLError, match="private or local address"):
        await resolve_checked("evil.test", 443, False, resolver)


async def test_resolve_checked_returns_every_checked_address() -> None:
    resolver = static({"ok.test": ["8.8.8.8", "2606:4700:4700::1111"]})
    got = await resolve_checked("ok.test", 443, False, resolver)
    assert got == ["8.8.8.8", "2606:4700:4700::1111"]


async def test_the_operator_can_allow_private_addresses() -> None:
    resolver = static({"dev.test": ["127.0.0.1"]})
    assert await resolve_checked("dev.test", 80, True, resolver) == ["127.0.0.1"]


async def test_localhost_is_refused_by_the_system_resolver() -> None:
    # /etc/hosts answers; nothing leaves the machine.
    with pytest.raises(UnsafeURLError):
        await resolve_checked("localhost", 80, False)


@pytest.mark.parametrize("url", ["ftp://8.8.8.8/x", "file:///etc/passwd", "https:///nohost"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        parse_url(url, SCHEMES)


# Regression: issue 9, item 1. Resolvers read these as addresses (127.0.0.010
# as 127.0.0.8) while httpx refused some of them at send time; one reading
# now decides, at the gateway and at delivery alike.
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.010/hook",
        "https://8.8.8.010/hook",
        "http://127.1/x",
        "http://2130706433/x",
        "http://0x7f.0.0.1/x",
        "http://0/x",
        "http://1.2.3.4./x",
        "http://[::1]:99999/x",
        "http://8.8.8.8:0/x",
        "http://exa mple.com/x",
        "http://example.com/\x00",
    ],
)
def test_urls_the_http_client_would_refuse_or_misread_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        parse_url(url, SCHEMES)


def test_parse_url_normalises_as_the_http_client_does() -> None:
    parsed = parse_url("HTTPS://Bücher.Example:8443/ä?x=1", SCHEMES)
    assert parsed == ParsedURL(
        url="https://xn--bcher-kva.example:8443/%C3%A4?x=1",
        scheme="https",
        host="xn--bcher-kva.example",
        port=8443,
    )
    assert parse_url("http://[::1]/x", SCHEMES).host == "::1"
    assert parse_url("http://v1.example/x", SCHEMES).port == 80


class RecordingStream(httpcore.AsyncMockStream):
    """Answers one HTTP response and records what was sent and the TLS name."""

    def __init__(self, backend: RecordingBackend) -> None:
        super().__init__(
            [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", b"ok"]
        )
        self.backend = backend

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.backend.written += buffer

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        self.backend.tls_names.append(server_hostname)
        return self


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the network: records each connect and opens nothing."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.written = b""
        self.tls_names: list[str | None] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return RecordingStream(self)


class Rebinding:
    """Answers each lookup of a name with the next of `answers` (DNS rebinding)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls += 1
        return self.answers.pop(0)


# Regression: issue 9, item 7. The address was checked, then the HTTP client
# resolved the name again to connect; now each connection resolves once and
# connects to the address that passed the check.
async def test_a_rebinding_name_is_connected_to_the_checked_address_only() -> None:
    resolver = Rebinding(["93.184.215.14"], ["127.0.0.1"])
    backend = RecordingBackend()
    transport = GuardedTransport(False, resolver, inner=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://rebind.test/x")
        assert response.status_code == 200 and response.text == "ok"
        assert backend.connects == [("93.184.215.14", 80)]
        assert resolver.calls == 1
        assert b"\r\nHost: rebind.test\r\n" in backend.written
        # The server closed the connection: the next one resolves again, gets
        # the private answer, and is refused before connecting.
        with pytest.raises(UnsafeURLError, match="private or local address"):
            await client.get("http://rebind.test/x")
    assert backend.connects == [("93.184.215.14", 80)]
    assert resolver.calls == 2


async def test_tls_keeps_the_hostname_while_connecting_to_the_checked_address() -> None:
    backend = RecordingBackend()
    transport = GuardedTransport(False, static({"media.test": ["8.8.8.8"]}), inner=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("https://media.test/a.wav")
    assert backend.connects == [("8.8.8.8", 443)]
    assert backend.tls_names == ["media.test"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::7f00:1]/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://127.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/x",
    ],
)
async def test_literal_forbidden_addresses_are_refused_before_connecting(url: str) -> None:
    backend = RecordingBackend()
    async with httpx.AsyncClient(transport=GuardedTransport(False, inner=backend)) as client:
        with pytest.raises(UnsafeURLError):
            await client.get(url)
    assert backend.connects == []


async def test_an_unresolvable_name_is_a_connect_error() -> None:
    async def nothing(host: str, port: int) -> Sequence[str]:
        return []

    backend = RecordingBackend()
    async with httpx.AsyncClient(transport=GuardedTransport(True, nothing, inner=backend)) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get("http://gone.test/x")
    assert backend.connects == []
