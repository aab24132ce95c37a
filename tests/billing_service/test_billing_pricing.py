from __future__ import annotations

import math

import pytest

from billing_service.pricing import PricingError, billed_seconds, price
from lipsync.jobs.v1 import jobs_pb2
from tests.job_specs import P480, P720, image_spec, multi_spec, video_spec

IMAGE = image_spec()
IMAGE_720 = image_spec(resolution=P720)


def test_contract_examples() -> None:
    assert price(IMAGE_720, [3.0]).credits == 20
    assert price(IMAGE_720, [3.0]).billed_seconds == 5
    assert price(IMAGE, [10.0]).credits == 20
    assert price(IMAGE, [10.0]).billed_seconds == 10


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
    assert price(IMAGE_720, [1234.5]).credits == 600 * 4


def test_empty_durations_cost_the_minimum() -> None:
    assert price(IMAGE, []).credits == 10
    assert price(multi_spec(jobs_pb2.ORDER_MEANWHILE, resolution=P720), []).credits == 20


def test_video_is_priced_by_its_audio() -> None:
    assert price(video_spec(), [12.3]).billed_seconds == 13


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
    assert price(multi_spec(order), [6.5, 9.7]).billed_seconds == seconds


def test_multi_sum_is_capped() -> None:
    assert price(multi_spec(jobs_pb2.ORDER_LEFT_RIGHT), [400, 400]).billed_seconds == 600


@pytest.mark.parametrize(
    ("spec", "durations"),
    [
        (jobs_pb2.JobSpec(resolution=P480), [3.0]),
        (image_spec(resolution=jobs_pb2.RESOLUTION_UNSPECIFIED), [3.0]),
        (IMAGE, [3.0, 4.0]),
        (multi_spec(), [3.0]),
        (multi_spec(jobs_pb2.ORDER_MEANWHILE), [3.0]),
        (IMAGE, [-1.0]),
        (IMAGE, [math.nan]),
        (IMAGE, [math.inf]),
    ],
)
def test_unpriceable_usage_is_an_error(spec: jobs_pb2.JobSpec, durations: list[float]) -> None:
    with pytest.raises(PricingError):
        price(spec, durations)
