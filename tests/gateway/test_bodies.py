"""The body models: one per JobSpec case, matching the proto field for field."""

from __future__ import annotations

from gateway.bodies import INPUTS, JOB_MODELS, FormState
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import MODEL_CASES


def test_every_job_spec_case_has_a_body_model_and_a_route_name() -> None:
    assert set(INPUTS) == set(MODEL_CASES.values())
    assert [(m.name, m.case) for m in JOB_MODELS.values()] == list(MODEL_CASES.items())


def test_each_models_inputs_are_the_fields_of_its_proto_message() -> None:
    for case, inputs in INPUTS.items():
        message = getattr(jobs_pb2.JobSpec(), case).DESCRIPTOR
        assert list(inputs.model_fields) == [field.name for field in message.fields], case


def test_a_form_state_is_its_inputs_then_the_common_options() -> None:
    for model in JOB_MODELS.values():
        fields = list(model.form_state.model_fields)
        assert fields == [*INPUTS[model.case].model_fields, *FormState.model_fields]
        assert model.summary, model.name


def test_options_become_the_spec_fields_of_every_model() -> None:
    form = JOB_MODELS["lipsync_video"].form_state.model_validate(
        {
            "video": "https://v.example/a.mp4",
            "audio": "https://v.example/a.wav",
            "resolution": "720p",
            "mask_image": "https://v.example/m.png",
            "prompt": "calm",
            "seed": 0,
        }
    )
    assert form.to_spec() == jobs_pb2.JobSpec(
        lipsync_video=jobs_pb2.LipsyncVideoInputs(
            video="https://v.example/a.mp4", audio="https://v.example/a.wav"
        ),
        resolution=jobs_pb2.RESOLUTION_720P,
        mask_image="https://v.example/m.png",
        prompt="calm",
        seed=0,
    )
