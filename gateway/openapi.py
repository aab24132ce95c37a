"""The parts of the OpenAPI document that FastAPI does not infer.

The job endpoints read their raw body (gateway.validation produces the
contract's error format), so their request schemas come from gateway.bodies,
the same models that validate them; the answers are described here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from gateway.bodies import ESTIMATE, ESTIMATE_SCHEMA_NAME, JOB_MODELS
from gateway.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from gateway.problems import title
from lipsync_common.job_spec import MODEL_CASES, MODEL_NAMES, STAGE_NAMES, STATUS_NAMES

if TYPE_CHECKING:
    ModelName = str
    StatusName = str
    StageName = str
else:
    ModelName = Literal[MODEL_NAMES]
    StatusName = Literal[tuple(STATUS_NAMES.values())]
    StageName = Literal[tuple(STAGE_NAMES.values())]


class JobCreated(BaseModel):
    id: str = Field(description="The job's UUID.")
    status: StatusName


class JobProgress(BaseModel):
    """How far a job in processing is; refreshed at least every 2 s while it renders."""

    stage: StageName
    percent: int = Field(ge=0, le=100, description="0 to 100; never goes down.")
    etaSeconds: int | None = Field(description="Seconds left at the measured rate; null: unknown.")


class Job(BaseModel):
    id: str
    model: ModelName
    status: StatusName
    output: str | None = Field(
        description="When completed: a URL of the MP4; else null (also once deleted or expired)."
    )
    error: str = Field(description='"" unless failed; then a message a user can act on.')
    executionTime: int | None = Field(description="When completed: milliseconds of processing.")
    timings: dict[str, int] | None = Field(description="Milliseconds per stage.")
    credits: int | None = Field(description="Credits charged; null until known, 0 if not charged.")
    seed: int | None = Field(None, description="The seed used to render, once known.")
    createdAt: str | None = Field(None, description="RFC 3339 creation time.")
    progress: JobProgress | None = Field(
        None, description="While processing: how far the job is; null once it has ended."
    )
    deletedAt: str | None = Field(
        None, description="RFC 3339 time its output was deleted on request; else null."
    )


class JobList(BaseModel):
    data: list[Job] = Field(description="The jobs, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page.")


class WebhookDelivery(BaseModel):
    attempt: int = Field(description="1 for the first attempt, counting on across redeliveries.")
    at: str = Field(description="RFC 3339 time of the attempt.")
    statusCode: int | None = Field(description="The receiver's HTTP status; null: no answer.")
    latencyMs: int | None = Field(description="Milliseconds until the answer; null: no answer.")
    error: str = Field(description='Why the attempt failed; "" on success.')
    nextAttemptAt: str | None = Field(description="RFC 3339 time of the next attempt; null: none.")


class WebhookDeliveries(BaseModel):
    data: list[WebhookDelivery] = Field(description="Every attempt, oldest first.")
    delivered: bool = Field(description="Whether an attempt was answered with a 2xx.")


class RedeliveryAccepted(BaseModel):
    id: str = Field(description="The job's UUID.")
    status: Literal["redelivering"] = Field(
        description="The terminal job object is being sent again, with the same webhook-id."
    )


class FieldErrorDoc(BaseModel):
    field: str = Field(examples=["formState.audio"])
    message: str = Field(examples=["formState.audio must be an http(s) URL"])


class ProblemDoc(BaseModel):
    """RFC 9457 problem details; `code` is a stable machine-readable word."""

    type: str = Field(
        description="`<public base>/api/v1/errors#<code>`: the code's entry in the errors"
        " catalogue.",
        examples=["https://api.example.com/api/v1/errors#insufficient_credits"],
    )
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldErrorDoc] | None = None


# One example body per endpoint; tests/gateway/test_openapi.py validates each.
EXAMPLES: Mapping[str, dict[str, Any]] = {
    "lipsync-video": {
        "formState": {
            "video": "https://example.com/speaker.mp4",
            "audio": "https://example.com/voice.mp3",
            "resolution": "720p",
        }
    },
    "lipsync-image": {
        "webhook": "https://example.com/hooks/lipsync",
        "formState": {
            "image": "https://example.com/portrait.png",
            "audio": "https://example.com/voice.wav",
        },
    },
    "lipsync-image-multi": {
        "formState": {
            "image": "https://example.com/two-people.jpg",
            "left_audio": "https://example.com/left.mp3",
            "right_audio": "https://example.com/right.mp3",
            "order": "meanwhile",
            "seed": 42,
        }
    },
}

ESTIMATE_EXAMPLE: Mapping[str, Any] = {
    "model": "lipsync-image",
    "formState": EXAMPLES["lipsync-image"]["formState"],
}


_DOC_MODELS: tuple[type[BaseModel], ...] = (
    *(model.request for model in JOB_MODELS.values()),
    JobCreated,
    Job,
    JobList,
    WebhookDeliveries,
    RedeliveryAccepted,
    ProblemDoc,
)
_REF_TEMPLATE = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF_TEMPLATE.format(model=name)}


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to one of the documentation models in the components."""
    return _ref(model.__name__)


def request_body(schema: str, example: Mapping[str, Any]) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON body by its schema's name in the components."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(schema), "example": example}},
        }
    }


def job_body(endpoint: str) -> dict[str, Any]:
    """`openapi_extra` declaring the JSON body of a job endpoint."""
    model = JOB_MODELS[MODEL_CASES[endpoint]]
    return request_body(model.request.__name__, EXAMPLES[endpoint])


def estimate_body() -> dict[str, Any]:
    """`openapi_extra` declaring the body of POST /api/v1/estimate."""
    return request_body(ESTIMATE_SCHEMA_NAME, ESTIMATE_EXAMPLE)


def problem_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses` entries for error statuses, all problem+json."""
    return {
        status: {
            "description": f"{title(status)}: {text}",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref(ProblemDoc.__name__)}},
        }
        for status, text in descriptions.items()
    }


def _replace_validation_errors(document: dict[str, Any]) -> None:
    """Point FastAPI's default 422 answers at the problem+json shape they really have."""
    problem = problem_responses({422: "a parameter is missing or invalid"})[422]
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {})
            if "application/json" in content:
                responses["422"] = problem
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install(app: FastAPI) -> None:
    """Add the documentation models to the components of the generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in _DOC_MODELS:
            schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        estimate = ESTIMATE.json_schema(ref_template=_REF_TEMPLATE)
        schemas.update(estimate.pop("$defs", {}))
        schemas[ESTIMATE_SCHEMA_NAME] = estimate
        _replace_validation_errors(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
