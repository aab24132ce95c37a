"""Job body validation: field names, all errors at once, the JobSpec it builds."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from starlette.requests import Request

from gateway.problems import Problem
from gateway.validation import (
    MAX_BODY_BYTES,
    fingerprint,
    parse_json_object,
    read_body,
    validate_estimate,
    validate_job_request,
)
from lipsync.jobs.v1 import jobs_pb2

VIDEO = "https://cdn.example.com/in.mp4"
AUDIO = "https://cdn.example.com/in.mp3"
IMAGE = "https://cdn.example.com/face.png"


def validate(endpoint: str, body: dict[str, Any], key: str | None = None, private: bool = False):
    return validate_job_request(endpoint, body, key, allow_private_urls=private)


def field_errors(endpoint: str, body: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    with pytest.raises(Problem) as caught:
        validate(endpoint, body, **kwargs)
    problem = caught.value
    assert problem.status == 422
    assert problem.code == "invalid_parameter"
    assert problem.detail == problem.errors[0].message
    return {error.field: error.message for error in problem.errors}


def test_video_request_maps_to_a_spec_with_defaults() -> None:
    job = validate("lipsync-video", {"formState": {"video": VIDEO, "audio": AUDIO}})
    assert job.spec == jobs_pb2.JobSpec(
        lipsync_video=jobs_pb2.LipsyncVideoInputs(video=VIDEO, audio=AUDIO),
        resolution=jobs_pb2.RESOLUTION_480P,
    )
    assert not job.spec.HasField("seed")
    assert job.webhook == ""
    assert job.idempotency_key == ""


def test_image_request_keeps_every_common_field() -> None:
    body = {
        "webhook": "https://hooks.example.com/x",
        "formState": {
            "image": IMAGE,
            "audio": AUDIO,
            "resolution": "720p",
            "mask_image": "http://cdn.example.com/mask.png",
            "prompt": "smile",
            "seed": 42,
        },
    }
    job = validate("lipsync-image", body, key="retry-1")
    assert job.spec == jobs_pb2.JobSpec(
        lipsync_image=jobs_pb2.LipsyncImageInputs(image=IMAGE, audio=AUDIO),
        resolution=jobs_pb2.RESOLUTION_720P,
        mask_image="http://cdn.example.com/mask.png",
        prompt="smile",
        seed=42,
    )
    assert job.webhook == "https://hooks.example.com/x"
    assert job.idempotency_key == "retry-1"


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (None, jobs_pb2.ORDER_LEFT_RIGHT),
        ("left_right", jobs_pb2.ORDER_LEFT_RIGHT),
        ("right_left", jobs_pb2.ORDER_RIGHT_LEFT),
        ("meanwhile", jobs_pb2.ORDER_MEANWHILE),
    ],
)
def test_multi_order_defaults_to_left_right(order: str | None, expected: int) -> None:
    form = {"image": IMAGE, "left_audio": AUDIO, "right_audio": AUDIO}
    if order is not None:
        form["order"] = order
    job = validate("lipsync-image-multi", {"formState": form})
    assert job.spec.WhichOneof("inputs") == "lipsync_image_multi"
    assert job.spec.lipsync_image_multi.order == expected
    assert job.spec.lipsync_image_multi.left_audio == AUDIO


def test_seed_minus_one_means_random() -> None:
    job = validate("lipsync-image", {"formState": {"image": IMAGE, "audio": AUDIO, "seed": -1}})
    assert not job.spec.HasField("seed")


@pytest.mark.parametrize("seed", [0, 2**63 - 1])
def test_seed_range_bounds_are_accepted(seed: int) -> None:
    job = validate("lipsync-image", {"formState": {"image": IMAGE, "audio": AUDIO, "seed": seed}})
    assert job.spec.seed == seed


def test_null_and_empty_optional_fields_count_as_absent() -> None:
    body = {
        "webhook": None,
        "formState": {"image": IMAGE, "audio": AUDIO, "seed": None, "mask_image": ""},
    }
    job = validate("lipsync-image", body)
    assert job.webhook == ""
    assert job.spec.mask_image == ""
    assert not job.spec.HasField("seed")


def test_null_or_empty_required_media_is_missing() -> None:
    errors = field_errors("lipsync-image", {"formState": {"image": None, "audio": ""}})
    assert errors == {
        "formState.image": "formState.image is required",
        "formState.audio": "formState.audio is required",
    }


def test_missing_audio_is_named() -> None:
    errors = field_errors("lipsync-image", {"formState": {"image": IMAGE}})
    assert errors == {"formState.audio": "formState.audio is required"}


def test_missing_form_state() -> None:
    assert field_errors("lipsync-image", {}) == {"formState": "formState is required"}


def test_form_state_must_be_an_object() -> None:
    errors = field_errors("lipsync-image", {"formState": [IMAGE, AUDIO]})
    assert errors == {"formState": "formState must be an object"}


@pytest.mark.parametrize("seed", ["42", 4.0, 1.5, True, False, [1]])
def test_seed_must_be_a_json_integer(seed: object) -> None:
    errors = field_errors(
        "lipsync-image", {"formState": {"image": IMAGE, "audio": AUDIO, "seed": seed}}
    )
    assert errors == {"formState.seed": "formState.seed must be an integer"}


@pytest.mark.parametrize("seed", [-2, 2**63])
def test_seed_out_of_range(seed: int) -> None:
    errors = field_errors(
        "lipsync-image", {"formState": {"image": IMAGE, "audio": AUDIO, "seed": seed}}
    )
    assert errors == {"formState.seed": f"formState.seed must be -1 or between 0 and {2**63 - 1}"}


@pytest.mark.parametrize("resolution", ["1080p", "480", 480, "", True])
def test_bad_resolution(resolution: object) -> None:
    form = {"image": IMAGE, "audio": AUDIO, "resolution": resolution}
    errors = field_errors("lipsync-image", {"formState": form})
    assert errors == {"formState.resolution": 'formState.resolution must be "480p" or "720p"'}


@pytest.mark.parametrize("order", ["both", 1, ["meanwhile"]])
def test_bad_order(order: object) -> None:
    form = {"image": IMAGE, "left_audio": AUDIO, "right_audio": AUDIO, "order": order}
    errors = field_errors("lipsync-image-multi", {"formState": form})
    assert errors == {
        "formState.order": 'formState.order must be "left_right", "right_left" or "meanwhile"'
    }


def test_order_is_unknown_outside_multi() -> None:
    form = {"image": IMAGE, "audio": AUDIO, "order": "meanwhile"}
    errors = field_errors("lipsync-image", {"formState": form})
    assert errors == {"formState.order": "formState.order is an unknown parameter"}


def test_unknown_keys_are_refused_at_both_levels() -> None:
    body = {"formState": {"image": IMAGE, "audio": AUDIO, "steps": 20}, "model": "x"}
    errors = field_errors("lipsync-image", body)
    assert errors == {
        "model": "model is an unknown parameter",
        "formState.steps": "formState.steps is an unknown parameter",
    }


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cdn.example.com/a.mp3",
        "file:///etc/passwd",
        "cdn.example.com/a.mp3",
        "https://",
        "https:///path",
        "https://cdn.example.com:99999/a.mp3",
        "https://cdn.example.com/a b.mp3",
        "javascript:alert(1)",
        42,
        {"url": AUDIO},
    ],
)
def test_media_must_be_http_urls(url: object) -> None:
    errors = field_errors("lipsync-image", {"formState": {"image": IMAGE, "audio": url}})
    assert errors == {"formState.audio": "formState.audio must be an http(s) URL"}


def test_media_url_length_is_bounded() -> None:
    long_url = "https://cdn.example.com/" + "a" * 2048
    errors = field_errors("lipsync-image", {"formState": {"image": IMAGE, "audio": long_url}})
    assert errors == {"formState.audio": "formState.audio must be at most 2048 characters"}


def test_prompt_is_a_bounded_string() -> None:
    form = {"image": IMAGE, "audio": AUDIO, "prompt": "x" * 2000}
    assert validate("lipsync-image", {"formState": form}).spec.prompt == "x" * 2000
    form["prompt"] = "x" * 2001
    errors = field_errors("lipsync-image", {"formState": form})
    assert errors == {"formState.prompt": "formState.prompt must be at most 2000 characters"}
    form["prompt"] = 7
    errors = field_errors("lipsync-image", {"formState": form})
    assert errors == {"formState.prompt": "formState.prompt must be a string"}


def test_http_webhook_is_refused_by_default() -> None:
    body = {"webhook": "http://hooks.example.com/x", "formState": {"image": IMAGE, "audio": AUDIO}}
    assert field_errors("lipsync-image", body) == {"webhook": "webhook must be an https:// URL"}


@pytest.mark.parametrize(
    "webhook",
    ["https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://localhost/hook", "https://[::1]/"],
)
def test_private_webhook_is_refused_by_default(webhook: str) -> None:
    body = {"webhook": webhook, "formState": {"image": IMAGE, "audio": AUDIO}}
    errors = field_errors("lipsync-image", body)
    assert errors == {"webhook": "webhook must not point to a private or local address"}


def test_operator_may_allow_http_and_private_webhooks() -> None:
    body = {"webhook": "http://127.0.0.1:9000/hook", "formState": {"image": IMAGE, "audio": AUDIO}}
    assert validate("lipsync-image", body, private=True).webhook == "http://127.0.0.1:9000/hook"


@pytest.mark.parametrize("webhook", [42, "ftp://hooks.example.com/", "not a url"])
def test_webhook_must_be_a_url(webhook: object) -> None:
    body = {"webhook": webhook, "formState": {"image": IMAGE, "audio": AUDIO}}
    assert list(field_errors("lipsync-image", body, private=True)) == ["webhook"]


# Regression: issue 9, item 1. These passed the gateway; the sender's HTTP
# client refuses (or its resolver misreads) them, so they are refused here.
@pytest.mark.parametrize(
    "webhook",
    [
        "https://127.0.0.010/hook",
        "https://8.8.8.010/hook",
        "https://127.1/hook",
        "https://2130706433/hook",
        "https://hooks.example.com:99999/hook",
    ],
)
@pytest.mark.parametrize("private", [False, True])
def test_webhook_urls_the_sender_would_refuse_are_refused(webhook: str, private: bool) -> None:
    body = {"webhook": webhook, "formState": {"image": IMAGE, "audio": AUDIO}}
    assert list(field_errors("lipsync-image", body, private=private)) == ["webhook"]


def test_every_field_error_is_listed_at_once_in_schema_order() -> None:
    # The header first, then the body's fields in the order of its schema (a
    # model's inputs before the common options), unknown fields last at each level.
    body = {
        "webhook": "http://hooks.example.com",
        "extra": 1,
        "formState": {"video": "nope", "resolution": "4k", "seed": True, "foo": 1},
    }
    errors = field_errors("lipsync-video", body, key="")
    assert list(errors) == [
        "Idempotency-Key",
        "webhook",
        "formState.video",
        "formState.audio",
        "formState.resolution",
        "formState.seed",
        "formState.foo",
        "extra",
    ]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there", "nl\n"])
def test_idempotency_key_must_be_printable_ascii(key: str) -> None:
    body = {"formState": {"image": IMAGE, "audio": AUDIO}}
    errors = field_errors("lipsync-image", body, key=key)
    assert errors == {
        "Idempotency-Key": "Idempotency-Key must be 1 to 255 printable ASCII characters"
    }


def test_idempotency_key_of_255_characters_is_accepted() -> None:
    body = {"formState": {"image": IMAGE, "audio": AUDIO}}
    assert validate("lipsync-image", body, key="k" * 255).idempotency_key == "k" * 255


def test_fingerprint_ignores_key_order_but_not_values_or_endpoint() -> None:
    a = {"formState": {"image": IMAGE, "audio": AUDIO}, "webhook": "https://h.example.com"}
    b = {"webhook": "https://h.example.com", "formState": {"audio": AUDIO, "image": IMAGE}}
    assert fingerprint("lipsync-image", a) == fingerprint("lipsync-image", b)
    assert fingerprint("lipsync-image", a) != fingerprint("lipsync-video", a)
    assert fingerprint("lipsync-image", a) != fingerprint("lipsync-image", {**a, "webhook": ""})
    canonical = json.dumps({"formState": {"audio": AUDIO, "image": IMAGE}}, separators=(",", ":"))
    expected = hashlib.sha256(f"lipsync-image\n{canonical}".encode()).hexdigest()
    assert fingerprint("lipsync-image", {"formState": {"image": IMAGE, "audio": AUDIO}}) == expected


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"\xff\xfe{}", b'{"a": NaN}'])
def test_body_that_is_not_json(raw: bytes) -> None:
    with pytest.raises(Problem) as caught:
        parse_json_object(raw)
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"3", b"null"])
def test_body_that_is_json_but_not_an_object(raw: bytes) -> None:
    with pytest.raises(Problem) as caught:
        parse_json_object(raw)
    assert (caught.value.status, caught.value.detail) == (
        400,
        "the request body must be a JSON object",
    )


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    with pytest.raises(Problem) as caught:
        parse_json_object(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.status == 400


def _request(chunks: list[bytes], content_length: int | None) -> Request:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)  # type: ignore[arg-type]


async def test_read_body_accepts_exactly_the_limit() -> None:
    body = b"x" * MAX_BODY_BYTES
    assert await read_body(_request([body[:1000], body[1000:]], len(body))) == body


async def test_read_body_refuses_a_declared_oversize_body_unread() -> None:
    request = _request([], MAX_BODY_BYTES + 1)  # receive() would fail if called
    with pytest.raises(Problem) as caught:
        await read_body(request)
    assert (caught.value.status, caught.value.code) == (413, "payload_too_large")


async def test_read_body_counts_the_bytes_of_a_chunked_body() -> None:
    chunks = [b"x" * 40_000, b"x" * 40_000]
    with pytest.raises(Problem) as caught:
        await read_body(_request(chunks, None))
    assert caught.value.status == 413


def estimate_errors(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Problem) as caught:
        validate_estimate(body, allow_private_urls=False)
    assert caught.value.status == 422
    return {error.field: error.message for error in caught.value.errors}


def test_estimate_body_becomes_the_spec_of_its_model() -> None:
    form = {"image": IMAGE, "left_audio": AUDIO, "right_audio": AUDIO, "resolution": "720p"}
    spec = validate_estimate(
        {"model": "lipsync-image-multi", "formState": form}, allow_private_urls=False
    )
    assert spec == jobs_pb2.JobSpec(
        lipsync_image_multi=jobs_pb2.LipsyncImageMultiInputs(
            image=IMAGE, left_audio=AUDIO, right_audio=AUDIO, order=jobs_pb2.ORDER_LEFT_RIGHT
        ),
        resolution=jobs_pb2.RESOLUTION_720P,
    )


@pytest.mark.parametrize("model", [None, "lipsync-audio", 3])
def test_estimate_needs_a_known_model(model: object) -> None:
    body = {"formState": {"image": IMAGE, "audio": AUDIO}}
    if model is not None:
        body["model"] = model
    assert estimate_errors(body) == {
        "model": "model must be one of lipsync-video, lipsync-image, lipsync-image-multi"
    }


def test_estimate_errors_name_the_fields_of_the_job_body_and_refuse_a_webhook() -> None:
    body = {
        "model": "lipsync-image",
        "webhook": "https://hooks.example.com/x",
        "formState": {"image": IMAGE},
    }
    assert estimate_errors(body) == {
        "formState.audio": "formState.audio is required",
        "webhook": "webhook is an unknown parameter",
    }


def surrogate_errors(raw: bytes) -> dict[str, str]:
    with pytest.raises(Problem) as caught:
        parse_json_object(raw)
    problem = caught.value
    assert (problem.status, problem.code) == (422, "invalid_parameter")
    assert problem.detail == problem.errors[0].message
    # The answer must itself be UTF-8, or rendering it would fail in turn.
    json.dumps(problem.body(), ensure_ascii=False).encode()
    return {error.field: error.message for error in problem.errors}


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\udc00", "\\uDBFF"])
def test_a_lone_surrogate_escape_is_a_422_naming_the_field(escape: str) -> None:
    raw = json.dumps({"formState": {"prompt": "a@b"}}).replace("@", escape)
    lowered = escape.lower()
    assert surrogate_errors(raw.encode()) == {
        "formState.prompt": f"formState.prompt must be valid Unicode text ({lowered}"
        " is a lone surrogate)"
    }


def test_utf8_encoded_surrogate_bytes_are_refused_too() -> None:
    # json.loads decodes bytes with "surrogatepass", so these come out as "\ud800".
    assert surrogate_errors(b'{"email": "\xed\xa0\x80@example.com"}') == {
        "email": "email must be valid Unicode text (\\ud800 is a lone surrogate)"
    }


def test_every_lone_surrogate_is_listed_in_names_and_lists_in_document_order() -> None:
    raw = b'{"a\\ud800": 1, "formState": {"x": ["ok", "\\udc01"]}, "webhook": "\\ud801"}'
    errors = surrogate_errors(raw)
    assert errors == {
        "a\\ud800": "a\\ud800 must be a name in valid Unicode text (\\ud800 is a lone surrogate)",
        "formState.x.1": "formState.x.1 must be valid Unicode text (\\udc01 is a lone surrogate)",
        "webhook": "webhook must be valid Unicode text (\\ud801 is a lone surrogate)",
    }
    assert list(errors) == ["a\\ud800", "formState.x.1", "webhook"]


def test_surrogate_pairs_and_an_escaped_backslash_are_valid_text() -> None:
    raw = b'{"prompt": "\\ud83d\\ude00", "note": "\\\\ud800"}'
    assert parse_json_object(raw) == {"prompt": "\U0001f600", "note": "\\ud800"}


def test_a_lone_surrogate_under_deep_nesting_is_a_422_not_a_crash() -> None:
    # As deep as json.loads itself accepts; a recursive walk would overflow here.
    depth = 900
    raw = b'{"a": ' + b"[" * depth + b'"\\ud800"' + b"]" * depth + b"}"
    errors = surrogate_errors(raw)
    assert list(errors) == ["a" + ".0" * depth]
