"""What the gateway can tell about a URL a client sent, without fetching it."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# Whitespace and control characters, which no URL we accept may contain.
_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def http_url_host(value: str) -> str | None:
    """The host of an http(s) URL, or None when `value` is not one."""
    if _CONTROL.search(value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname


def is_private_host(host: str) -> bool:
    """Whether the host is a literal private address or a localhost name.

    Only literal addresses and localhost can be judged here; the webhook sender
    must still check the resolved address at delivery time.
    """
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False
