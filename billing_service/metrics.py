"""Credit counters: what was held, charged and given back."""

from __future__ import annotations

from prometheus_client import Counter

CREDITS_RESERVED = Counter(
    "lipsync_credits_reserved_total", "API credits held by reservations of jobs."
)
CREDITS_CAPTURED = Counter(
    "lipsync_credits_captured_total", "API credits charged for completed jobs."
)
CREDITS_RELEASED = Counter(
    "lipsync_credits_released_total", "API credits given back for failed or canceled jobs."
)
