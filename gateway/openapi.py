"""What the OpenAPI document says about bodies the gateway validates by hand.

The job endpoints read their raw body (gateway.validation produces the
contract's error format), so FastAPI cannot infer their schemas. These pydantic
models exist only to describe the bodies and answers in `/openapi.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from gateway.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from gateway.problems import title
from gateway.validation import MAX_PROMPT_CHARS, MAX_SEED, MAX_URL_CHARS

# Documents the scheme only; gateway.auth does the checking.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer sk_<keyid>_<secret>`.",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _CommonFormState(_Strict):
    resolution: Literal["480p", "720p"] = Field("480p", description="Height of the output video.")
    mask_image: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        description="URL of a mask image; white marks where the lips may be changed.",
    )
    prompt: str | None = Field(
        None, max_length=MAX_PROMPT_CHARS, description="Style guidance text."
    )
    seed: int | None = Field(
        None,
        ge=-1,
        le=MAX_SEED,
        description="-1 or absent means random; the same seed and inputs give the same output.",
    )


class VideoFormState(_CommonFormState):
    video: str = Field(
        max_length=MAX_URL_CHARS, description="Public URL of the source video (MP4, MOV, ...)."
    )
    audio: str = Field(
        max_length=MAX_URL_CHARS, description="Public URL of the new audio (MP3, WAV, ...)."
    )


class ImageFormState(_CommonFormState):
    image: str = Field(
        max_length=MAX_URL_CHARS, description="Public URL of a portrait (PNG, JPEG, WebP)."
    )
    audio: str = Field(max_length=MAX_URL_CHARS, description="Public URL of the audio.")


class ImageMultiFormState(_CommonFormState):
    image: str = Field(
        max_length=MAX_URL_CHARS, description="Public URL of an image with two people."
    )
    left_audio: str = Field(max_length=MAX_URL_CHARS, description="Audio of the left person.")
    right_audio: str = Field(max_length=MAX_URL_CHARS, description="Audio of the right person.")
    order: Literal["left_right", "right_left", "meanwhile"] = Field(
        "left_right", description="Who speaks when; `meanwhile` plays both audios at once."
    )


_WEBHOOK = Field(
    None,
    max_length=MAX_URL_CHARS,
    description="https:// URL that receives the job object when the job ends.",
)


class LipsyncVideoRequest(_Strict):
    webhook: str | None = _WEBHOOK
    formState: VideoFormState


class LipsyncImageRequest(_Strict):
    webhook: str | None = _WEBHOOK
    formState: ImageFormState


class LipsyncImageMultiRequest(_Strict):
    webhook: str | None = _WEBHOOK
    formState: ImageMultiFormState


class JobCreated(BaseModel):
    id: str = Field(description="The job's UUID.")
    status: Literal["processing", "completed", "failed", "canceled"]


class Job(BaseModel):
    id: str
    model: Literal["lipsync-video", "lipsync-image", "lipsync-image-multi"]
    status: Literal["processing", "completed", "failed", "canceled"]
    output: str | None = Field(description="When completed: a URL of the MP4; else null.")
    error: str = Field(description='"" unless failed; then a message a user can act on.')
    executionTime: int | None = Field(description="When completed: milliseconds of processing.")
    timings: dict[str, int] | None = Field(description="Milliseconds per stage.")
    credits: int | None = Field(description="Credits charged; null until known.")
    seed: int | None = Field(None, description="The seed used to render, once known.")
    createdAt: str | None = Field(None, description="RFC 3339 creation time.")


class FieldErrorDoc(BaseModel):
    field: str = Field(examples=["formState.audio"])
    message: str = Field(examples=["formState.audio must be an http(s) URL"])


class ProblemDoc(BaseModel):
    """RFC 9457 problem details; `code` is a stable machine-readable word."""

    type: str = Field("about:blank")
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldErrorDoc] | None = None


REQUEST_MODELS: Mapping[str, type[BaseModel]] = {
    "lipsync-video": LipsyncVideoRequest,
    "lipsync-image": LipsyncImageRequest,
    "lipsync-image-multi": LipsyncImageMultiRequest,
}

_EXAMPLES: Mapping[str, dict[str, Any]] = {
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

_DOC_MODELS: tuple[type[BaseModel], ...] = (*REQUEST_MODELS.values(), JobCreated, Job, ProblemDoc)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def request_body(endpoint: str) -> dict[str, Any]:
    """`openapi_extra` declaring the JSON body of a job endpoint."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _ref(REQUEST_MODELS[endpoint]),
                    "example": _EXAMPLES[endpoint],
                }
            },
        }
    }


def problem_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses` entries for error statuses, all problem+json."""
    return {
        status: {
            "description": f"{title(status)}: {text}",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref(ProblemDoc)}},
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
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        _replace_validation_errors(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
