"""The price rules of the public contract (API.md, Billing), as pure functions.

    billed_seconds = min(600, max(5, ceil(duration_seconds)))
    credits        = billed_seconds * (2 if 480p else 4)

Durations are rounded to whole milliseconds before the ceiling: decoders report
lengths such as 10.0000001 s for a 10 s file, which must bill 10 s, not 11.
A duration over 600 s prices at the cap; rejecting such inputs is the worker's
job, which fails the job before anything is captured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import jobs_pb2

MIN_BILLED_SECONDS = 5
MAX_BILLED_SECONDS = 600
CREDITS_PER_SECOND = {
    jobs_pb2.RESOLUTION_480P: 2,
    jobs_pb2.RESOLUTION_720P: 4,
}
FORMULA = (
    "credits = min(maximum_seconds, max(minimum_seconds, ceil(duration_seconds)))"
    " * credits_per_second"
)


class PricingError(ValueError):
    """The usage cannot be priced; the message says why."""


@dataclass(frozen=True)
class Price:
    billed_seconds: int
    credits: int


def billed_seconds(duration_seconds: float) -> int:
    milliseconds = round(duration_seconds * 1000)
    seconds = -(-milliseconds // 1000)
    return min(MAX_BILLED_SECONDS, max(MIN_BILLED_SECONDS, seconds))


def output_duration(spec: jobs_pb2.JobSpec, durations: Sequence[float]) -> float:
    """Seconds of output the job produces; 0 when the durations are unknown."""
    for duration in durations:
        if not math.isfinite(duration) or duration < 0:
            raise PricingError(f"duration must be a non-negative number, not {duration}")
    case = spec.WhichOneof("inputs")
    if case in ("lipsync_image", "lipsync_video"):
        # A video's output is cut or extended to the audio, so only the audio counts.
        return _durations(durations, 1, "lipsync-image and lipsync-video take one audio duration")
    if case == "lipsync_image_multi":
        left_right = _durations(durations, 2, "lipsync-image-multi takes two audio durations")
        if spec.lipsync_image_multi.order == jobs_pb2.ORDER_MEANWHILE:
            return max(durations, default=0.0)
        return left_right
    raise PricingError("model is not set")


def _durations(durations: Sequence[float], count: int, message: str) -> float:
    """The sum of `count` durations, or 0 when none is known yet (the minimum charge)."""
    if not durations:
        return 0.0
    if len(durations) != count:
        raise PricingError(message)
    return sum(durations)


def price(spec: jobs_pb2.JobSpec, durations: Sequence[float]) -> Price:
    rate = CREDITS_PER_SECOND.get(spec.resolution)
    if rate is None:
        raise PricingError("resolution must be 480p or 720p")
    seconds = billed_seconds(output_duration(spec, durations))
    return Price(billed_seconds=seconds, credits=seconds * rate)


def price_usage(usage: billing_pb2.Usage) -> Price:
    return price(usage.spec, list(usage.duration_seconds))
