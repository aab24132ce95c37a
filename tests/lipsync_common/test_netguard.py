from __future__ import annotations

import pytest

from lipsync_common.netguard import UnsafeURLError, check_url

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
