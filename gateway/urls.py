"""What the gateway can tell about a URL a client sent, without fetching it.

URLs are read by `lipsync_common.netguard.parse_url`, as the worker and the
webhook sender read them, so the gateway refuses every URL they would.
"""

from __future__ import annotations

from lipsync_common.netguard import UnsafeURLError, is_public_address, parse_url


def http_url_host(value: str) -> str | None:
    """The host of an http(s) URL, or None when `value` is not one."""
    try:
        return parse_url(value, ("http", "https")).host
    except UnsafeURLError:
        return None


def is_private_host(host: str) -> bool:
    """Whether the host is a literal private address or a localhost name.

    Only literal addresses and localhost can be judged here; the webhook sender
    must still check the resolved address at delivery time.
    """
    host = host.removesuffix(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public_address(host)
    except ValueError:
        return False
