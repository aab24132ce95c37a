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
    billing_pb2.RESOLUTION_480P: 2,
    billing_pb2.RESOLUTION_720P: 4,
}
_MODELS = (
    jobs_pb2.MODEL_LIPSYNC_IMAGE,
    jobs_pb2.MODEL_LIPSYNC_VIDEO,
    jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI,
)
RESOLUTION_NAMES = {
    billing_pb2.RESOLUTION_480P: "480p",
    billing_pb2.RESOLUTION_720P: "720p",
}


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


def output_duration(
    model: jobs_pb2.Model.ValueType, order: jobs_pb2.Order.ValueType, durations: Sequence[float]
) -> float:
    """Seconds of output the request produces; 0 when the durations are unknown."""
    if model not in _MODELS:
        raise PricingError("model is not set")
    for duration in durations:
        if not math.isfinite(duration) or duration < 0:
            raise PricingError(f"duration must be a non-negative number, not {duration}")
    if not durations:
        return 0.0
    if model in (jobs_pb2.MODEL_LIPSYNC_IMAGE, jobs_pb2.MODEL_LIPSYNC_VIDEO):
        # A video's output is cut or extended to the audio, so only the audio counts.
        if len(durations) != 1:
            raise PricingError("lipsync-image and lipsync-video take one audio duration")
        return durations[0]
    if len(durations) != 2:
        raise PricingError("lipsync-image-multi takes two audio durations")
    if order == jobs_pb2.ORDER_MEANWHILE:
        return max(durations)
    return sum(durations)


def price(
    model: jobs_pb2.Model.ValueType,
    resolution: billing_pb2.Resolution.ValueType,
    order: jobs_pb2.Order.ValueType,
    durations: Sequence[float],
) -> Price:
    rate = CREDITS_PER_SECOND.get(resolution)
    if rate is None:
        raise PricingError("resolution must be 480p or 720p")
    seconds = billed_seconds(output_duration(model, order, durations))
    return Price(billed_seconds=seconds, credits=seconds * rate)


def price_usage(usage: billing_pb2.Usage) -> Price:
    return price(usage.model, usage.resolution, usage.order, list(usage.duration_seconds))
