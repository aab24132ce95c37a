"""Every model of the job contract is served by every part that branches on the model.

The model of a job is the case of `JobSpec.inputs` (protos/lipsync/jobs/v1/jobs.proto).
A case added there without its branch in pricing or in the worker's job module
fails here, rather than as a failed job in production.
"""

from __future__ import annotations

import pytest

from billing_service.pricing import price
from inference_service.job_inputs import job_inputs
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import MODEL_CASES, model_name


def spec_of(case: str) -> jobs_pb2.JobSpec:
    spec = jobs_pb2.JobSpec(resolution=jobs_pb2.RESOLUTION_480P)
    getattr(spec, case).SetInParent()
    return spec


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_every_model_has_a_rest_name_a_price_and_a_worker_branch(name: str) -> None:
    spec = spec_of(MODEL_CASES[name])
    assert model_name(spec) == name
    # No durations: the minimum charge, 5 s at 480p.
    assert price(spec, []).credits == 10
    inputs = job_inputs(spec)
    assert inputs.priced_audio
    assert set(inputs.priced_audio) <= {item.name for item in inputs.media}


def test_the_rest_names_are_the_three_endpoints() -> None:
    assert set(MODEL_CASES) == {"lipsync-video", "lipsync-image", "lipsync-image-multi"}
