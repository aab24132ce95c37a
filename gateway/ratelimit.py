"""Requests per minute per credential: a token bucket in each gateway replica.

Each API key (or session) has a bucket of `per_minute` tokens that refills
continuously; a request takes one token, and an empty bucket answers 429 with
`Retry-After` saying when the next token arrives.

Why per replica and not shared: a shared counter would cost every request a
network round trip (to the auth service or a Redis) and make the whole API
depend on that store for every call. With N gateway replicas behind a load
balancer that spreads requests evenly, set `LIPSYNC_RATE_LIMIT_PER_MIN` to the
wanted limit divided by N; a client then sees the configured limit overall,
give or take the imbalance of the balancer. The limit protects the platform
from floods; the credit balance, not this limit, bounds what anyone spends.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.problems import Problem

# Bounds memory under a flood of distinct credentials; idle buckets are full
# anyway, so dropping the least recently used one loses nothing.
MAX_BUCKETS = 100_000


def rate_limited(retry_after_s: float, per_minute: int) -> Problem:
    seconds = max(1, math.ceil(retry_after_s))
    return Problem(
        429,
        "rate_limited",
        f"rate limit of {per_minute} requests per minute exceeded; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


class RateLimiter:
    """Token buckets keyed by credential id; `per_minute <= 0` turns the limit off."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        # credential id -> (tokens, time of the last update)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, credential_id: str) -> None:
        """Take one token for `credential_id`, else raise the 429 problem."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.pop(credential_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[credential_id] = (tokens, now)
            raise rate_limited((1.0 - tokens) / self._rate, self.per_minute)
        self._buckets[credential_id] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
