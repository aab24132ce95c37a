from __future__ import annotations

import pytest

from lipsync_common.netguard import ParsedURL, UnsafeURLError, check_url, parse_url

SCHEMES = ("http", "https")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
    ],
)
async def test_private_and_local_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        await check_url(url, allow_private=False, schemes=SCHEMES)


async def test_public_addresses_pass() -> None:
    await check_url("https://8.8.8.8/a.wav", allow_private=False, schemes=SCHEMES)


async def test_the_operator_can_allow_private_addresses() -> None:
    await check_url("http://127.0.0.1/x", allow_private=True, schemes=SCHEMES)


@pytest.mark.parametrize("url", ["ftp://8.8.8.8/x", "file:///etc/passwd", "https:///nohost"])
async def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        await check_url(url, allow_private=True, schemes=SCHEMES)


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
async def test_urls_the_http_client_would_refuse_or_misread_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        parse_url(url, SCHEMES)
    with pytest.raises(UnsafeURLError):
        await check_url(url, allow_private=True, schemes=SCHEMES)


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


async def test_check_url_returns_what_to_connect_to() -> None:
    parsed = await check_url("https://8.8.8.8/a.wav", allow_private=False, schemes=SCHEMES)
    assert (parsed.host, parsed.port) == ("8.8.8.8", 443)
