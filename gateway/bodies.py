"""The job request bodies as pydantic models: they validate bodies and make the docs.

Each model of `JobSpec.inputs` has one pydantic model of its inputs here, in
`INPUTS`, keyed by the oneof case; its docstring is the endpoint's summary.
Everything else is generated from it: the endpoint's `formState` (its inputs
first, then the options every model takes), the job body with `webhook`, the
`POST /api/v1/estimate` body with `"model"`, the `JobSpec` a valid body becomes
and, through `JOB_MODELS`, the route. Validation and the OpenAPI document read
the same classes, so they cannot disagree.

Error messages are those of the contract: the validators here raise
`invalid(...)` with the end of a sentence ("must be an http(s) URL") that
gateway.validation prefixes with the field's name as the client wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, cast, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from gateway.urls import http_url_host, is_private_host
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import (
    MODEL_CASES,
    ORDER_NAMES,
    ORDERS_BY_NAME,
    RESOLUTION_NAMES,
    RESOLUTIONS_BY_NAME,
)

MAX_URL_CHARS = 2048
MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1
DEFAULT_RESOLUTION = RESOLUTION_NAMES[jobs_pb2.RESOLUTION_480P]
DEFAULT_ORDER = ORDER_NAMES[jobs_pb2.ORDER_LEFT_RIGHT]
# The validation context key that lets a webhook be http:// or private.
ALLOW_PRIVATE_URLS = "allow_private_urls"
# The error type of the messages written here; gateway.validation uses them as they are.
INVALID = "invalid_value"

if TYPE_CHECKING:
    ResolutionName = str
    OrderName = str
else:
    # The REST words come from the proto enums, so a new value needs no edit here.
    ResolutionName = Literal[tuple(RESOLUTIONS_BY_NAME)]
    OrderName = Literal[tuple(ORDERS_BY_NAME)]


def invalid(message: str, **context: Any) -> PydanticCustomError:
    """An error whose message is the end of a sentence that starts with the field."""
    return PydanticCustomError(INVALID, message, context)


class _BlankIsAbsent:
    """Marks a field for which "" means left out, as web forms send it."""


BLANK_IS_ABSENT = _BlankIsAbsent()
_URI = {"format": "uri"}


def _media_url(value: object) -> object:
    if not isinstance(value, str) or http_url_host(value) is None:
        raise invalid("must be an http(s) URL")
    return value


def _webhook_url(value: object, info: ValidationInfo) -> object:
    allow_private = bool((info.context or {}).get(ALLOW_PRIVATE_URLS))
    host = http_url_host(value) if isinstance(value, str) else None
    if host is None or not (allow_private or str(value).lower().startswith("https://")):
        raise invalid("must be an http(s) URL" if allow_private else "must be an https:// URL")
    if not allow_private and is_private_host(host):
        raise invalid("must not point to a private or local address")
    return value


def _seed(value: int) -> int:
    if value != -1 and not 0 <= value <= MAX_SEED:
        raise invalid("must be -1 or between 0 and {maximum}", maximum=MAX_SEED)
    return value


MediaUrl = Annotated[
    str,
    BLANK_IS_ABSENT,
    Field(max_length=MAX_URL_CHARS, json_schema_extra=_URI),
    BeforeValidator(_media_url),
]
WebhookUrl = Annotated[
    str,
    BLANK_IS_ABSENT,
    Field(max_length=MAX_URL_CHARS, json_schema_extra=_URI),
    BeforeValidator(_webhook_url),
]
# Strict: "42", 4.0 and true are not JSON integers.
Seed = Annotated[
    int,
    Strict(),
    AfterValidator(_seed),
    Field(json_schema_extra={"minimum": -1, "maximum": MAX_SEED}),
]


def _blank_is_absent(field: FieldInfo) -> bool:
    if BLANK_IS_ABSENT in field.metadata:
        return True
    # `MediaUrl | None` keeps the marker inside the union's Annotated member.
    return any(
        BLANK_IS_ABSENT in getattr(arg, "__metadata__", ()) for arg in get_args(field.annotation)
    )


class Body(BaseModel):
    """A JSON object of the API: unknown members are refused, null means absent."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_absent(cls, data: Any) -> Any:
        # JSON clients often send null (and web forms "") for a field left empty;
        # dropping them lets a default apply or "is required" be reported.
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            name: value
            for name, value in data.items()
            if name not in fields
            or not (value is None or (value == "" and _blank_is_absent(fields[name])))
        }


class LipsyncVideo(Body):
    """Replace the audio of a video, re-animating the lips to the new audio."""

    video: MediaUrl = Field(description="Public URL of the source video (MP4, MOV, ...).")
    audio: MediaUrl = Field(description="Public URL of the new audio (MP3, WAV, ...).")


class LipsyncImage(Body):
    """Make a talking video of one speaker from a portrait and an audio."""

    image: MediaUrl = Field(description="Public URL of a portrait (PNG, JPEG, WebP).")
    audio: MediaUrl = Field(description="Public URL of the audio.")


class LipsyncImageMulti(Body):
    """Make a conversation from an image of two people and two audios."""

    image: MediaUrl = Field(description="Public URL of an image with two people.")
    left_audio: MediaUrl = Field(description="Audio of the left person.")
    right_audio: MediaUrl = Field(description="Audio of the right person.")
    order: OrderName = Field(
        DEFAULT_ORDER, description="Who speaks when; `meanwhile` plays both audios at once."
    )


# The inputs of each model, keyed by its case of `JobSpec.inputs`; the fields
# are those of the case's message (enums by their REST words).
INPUTS: Mapping[str, type[Body]] = {
    "lipsync_video": LipsyncVideo,
    "lipsync_image": LipsyncImage,
    "lipsync_image_multi": LipsyncImageMulti,
}

# Enum fields of the inputs messages, from REST word to proto value.
_ENUM_VALUES: Mapping[str, Mapping[str, int]] = {
    jobs_pb2.Order.DESCRIPTOR.full_name: ORDERS_BY_NAME,
}


class FormState(Body):
    """The options every model takes; a model's formState adds its inputs before them."""

    case: ClassVar[str]

    resolution: ResolutionName = Field(
        DEFAULT_RESOLUTION, description="Height of the output video."
    )
    mask_image: MediaUrl | None = Field(
        None, description="URL of a mask image; white marks where the lips may be changed."
    )
    prompt: str | None = Field(
        None, max_length=MAX_PROMPT_CHARS, description="Style guidance text."
    )
    seed: Seed | None = Field(
        None,
        description="-1 or absent means random; the same seed and inputs give the same output.",
    )

    def to_spec(self) -> jobs_pb2.JobSpec:
        """The JobSpec of this formState: its case's inputs and the options."""
        spec = jobs_pb2.JobSpec(
            resolution=jobs_pb2.Resolution.ValueType(RESOLUTIONS_BY_NAME[self.resolution]),
            mask_image=self.mask_image or "",
            prompt=self.prompt or "",
        )
        if self.seed is not None and self.seed != -1:
            spec.seed = self.seed
        inputs = getattr(spec, self.case)
        inputs.SetInParent()
        for field in inputs.DESCRIPTOR.fields:
            value = getattr(self, field.name)
            if field.enum_type is not None:
                value = _ENUM_VALUES[field.enum_type.full_name][value]
            setattr(inputs, field.name, value)
        return spec


class JobBody(Body):
    """What the job endpoints share: an optional webhook and a formState."""

    webhook: WebhookUrl | None = Field(
        None, description="https:// URL that receives the job object when the job ends."
    )
    formState: FormState


class EstimateBody(Body):
    """A job body's formState with the model it is for, and no webhook."""

    model: str
    formState: FormState


@dataclass(frozen=True)
class JobModel:
    """One model of the API, and the body classes generated from its inputs."""

    name: str
    case: str
    summary: str
    form_state: type[FormState]
    request: type[JobBody]
    estimate: type[EstimateBody]


def _job_model(name: str, case: str) -> JobModel:
    inputs = INPUTS.get(case)
    if inputs is None:
        raise RuntimeError(f"gateway.bodies.INPUTS has no model for the JobSpec case {case!r}")
    title = inputs.__name__
    # FormState first in the bases puts the inputs' fields first in the schema
    # and in the errors, the order clients read them in.
    form_state = cast(
        "type[FormState]",
        create_model(
            f"{title}FormState",
            __base__=(FormState, inputs),
            __doc__=f"The parameters of POST /api/v1/{name}.",
        ),
    )
    form_state.case = case
    request = create_model(
        f"{title}Request",
        __base__=JobBody,
        formState=(form_state, Field(description="The parameters of the job.")),
    )
    estimate = create_model(
        f"{title}Estimate",
        __base__=EstimateBody,
        model=(  # type: ignore[arg-type]
            Literal[name],
            Field(description="The endpoint the job would be created on."),
        ),
        formState=(form_state, Field(description=f"The formState of POST /api/v1/{name}.")),
    )
    return JobModel(name, case, (inputs.__doc__ or "").strip(), form_state, request, estimate)


# Keyed by the JobSpec case, in the order of the proto.
JOB_MODELS: Mapping[str, JobModel] = {
    case: _job_model(name, case) for name, case in MODEL_CASES.items()
}

ESTIMATE_SCHEMA_NAME = "EstimateRequest"
# The estimate body is one of the models' estimate bodies, chosen by "model".
ESTIMATE: TypeAdapter[EstimateBody] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]
        Union[tuple(model.estimate for model in JOB_MODELS.values())],  # noqa: UP007
        Field(discriminator="model"),
    ]
)
