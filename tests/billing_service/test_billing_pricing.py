from __future__ import annotations

import math

import pytest

from billing_service.pricing import PricingError, billed_seconds, price
from lipsync.billing.v1 import billing_pb2
from lipsync.jobs.v1 import jobs_pb2

IMAGE = jobs_pb2.MODEL_LIPSYNC_IMAGE
VIDEO = jobs_pb2.MODEL_LIPSYNC_VIDEO
MULTI = jobs_pb2.MODEL_LIPSYNC_IMAGE_MULTI
P480 = billing_pb2.RESOLUTION_480P
P720 = billing_pb2.RESOLUTION_720P
NO_ORDER = jobs_pb2.ORDER_UNSPECIFIED


def test_contract_examples() -> None:
    assert price(IMAGE, P720, NO_ORDER, [3.0]).credits == 20
    assert price(IMAGE, P720, NO_ORDER, [3.0]).billed_seconds == 5
    assert price(IMAGE, P480, NO_ORDER, [10.0]).credits == 20
    assert price(IMAGE, P480, NO_ORDER, [10.0]).billed_seconds == 10


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        (0.0, 5),
        (0.5, 5),
        (4.999, 5),
        (5.0, 5),
        (5.001, 6),
        (10.2, 11),
        (599.5, 600),
        (600.0, 600),
        (600.001, 600),
        (3600.0, 600),
    ],
)
def test_billed_seconds_rounds_up_between_minimum_and_cap(duration: float, seconds: int) -> None:
    assert billed_seconds(duration) == seconds


@pytest.mark.parametrize("duration", [10.0000001, 10.0004, 9.9999999, 10 + 1e-12])
def test_decoder_float_noise_does_not_add_a_second(duration: float) -> None:
    assert billed_seconds(duration) == 10


def test_cap_price_at_720p() -> None:
    assert price(IMAGE, P720, NO_ORDER, [1234.5]).credits == 600 * 4


def test_empty_durations_cost_the_minimum() -> None:
    assert price(IMAGE, P480, NO_ORDER, []).credits == 10
    assert price(MULTI, P720, jobs_pb2.ORDER_MEANWHILE, []).credits == 20


def test_video_is_priced_by_its_audio() -> None:
    assert price(VIDEO, P480, NO_ORDER, [12.3]).billed_seconds == 13


@pytest.mark.parametrize(
    ("order", "seconds"),
    [
        (jobs_pb2.ORDER_UNSPECIFIED, 17),
        (jobs_pb2.ORDER_LEFT_RIGHT, 17),
        (jobs_pb2.ORDER_RIGHT_LEFT, 17),
        (jobs_pb2.ORDER_MEANWHILE, 10),
    ],
)
def test_multi_sums_in_turn_and_takes_the_longer_meanwhile(
    order: jobs_pb2.Order.ValueType, seconds: int
) -> None:
    assert price(MULTI, P480, order, [6.5, 9.7]).billed_seconds == seconds


def test_multi_sum_is_capped() -> None:
    assert price(MULTI, P480, jobs_pb2.ORDER_LEFT_RIGHT, [400, 400]).billed_seconds == 600


@pytest.mark.parametrize(
    ("model", "resolution", "durations"),
    [
        (jobs_pb2.MODEL_UNSPECIFIED, P480, [3.0]),
        (IMAGE, billing_pb2.RESOLUTION_UNSPECIFIED, [3.0]),
        (IMAGE, P480, [3.0, 4.0]),
        (MULTI, P480, [3.0]),
        (IMAGE, P480, [-1.0]),
        (IMAGE, P480, [math.nan]),
        (IMAGE, P480, [math.inf]),
    ],
)
def test_unpriceable_usage_is_an_error(
    model: jobs_pb2.Model.ValueType,
    resolution: billing_pb2.Resolution.ValueType,
    durations: list[float],
) -> None:
    with pytest.raises(PricingError):
        price(model, resolution, NO_ORDER, durations)
