"""When a request is sent again, and after how long.

Retried: connection errors (refused, reset, a response that never came),
`429` and `5xx`. Never a `4xx` other than 429: the same request would get the
same answer. Delays grow exponentially with full jitter, so many clients
that failed together do not come back together, and a `Retry-After` on the
answer is honoured as given (capped, so a bad header cannot hang a caller).

Retrying a create is safe because the client always sends an
`Idempotency-Key`: the API answers a repeat with the job it already made.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from lipsync_client.errors import parse_retry_after

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# The longest Retry-After the client sleeps for; a longer one is raised to the caller.
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (0-based): full jitter under a doubling cap."""
        cap = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return random.uniform(cap / 2, cap)

    def delay_after(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before sending again, or None when this outcome is not retried."""
        if attempt >= self.max_retries:
            return None
        if response is None:
            return self.backoff(attempt)
        if response.status_code not in RETRIED_STATUSES:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            return None if retry_after > MAX_RETRY_AFTER_S else retry_after
        return self.backoff(attempt)


# What a retry may follow: the request may not have reached the server, or its answer was lost.
RETRIED_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)
