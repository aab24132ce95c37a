"""The OpenAPI document: its bodies are the ones validated, and its answers are problems.

The job bodies' schemas and the validation are the same pydantic models; these
tests check it from the outside: every example in the document is accepted,
and every constraint the document states (required, enum, maxLength, uri,
minimum/maximum, no other properties) is enforced with the contract's errors.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from gateway.problems import Problem
from gateway.validation import validate_job_request
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.jobjson import job_to_json
from tests.gateway.conftest import AUTH_HEADERS

JOB_PATHS = ("/api/v1/lipsync-video", "/api/v1/lipsync-image", "/api/v1/lipsync-image-multi")


async def test_document_describes_the_job_endpoints(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Lip-sync API"
    schemas = document["components"]["schemas"]

    create = document["paths"]["/api/v1/lipsync-image-multi"]["post"]
    body = create["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/LipsyncImageMultiRequest"}
    assert body["example"]["formState"]["order"] == "meanwhile"
    form = schemas["LipsyncImageMultiFormState"]
    assert set(form["required"]) == {"image", "left_audio", "right_audio"}
    assert form["properties"]["order"]["enum"] == ["left_right", "right_left", "meanwhile"]
    assert form["additionalProperties"] is False

    assert create["operationId"] == "lipsync-image-multi"
    assert create["security"] == [{"ApiKey": []}]
    assert {"202", "400", "401", "402", "409", "413", "422"} <= set(create["responses"])
    problem = create["responses"]["402"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/ProblemDoc"}
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key", "Prefer"]


async def test_every_reference_resolves(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


async def test_framework_422s_are_documented_as_problems(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    get_job = document["paths"]["/api/v1/jobs/{id}"]["get"]
    assert list(get_job["responses"]["422"]["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_docs_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _bodies(document: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, example, schema) of every request body with an example."""
    found = []
    for path, operations in document["paths"].items():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {})
            if "example" in body:
                found.append((path, body["example"], _resolve(document, body["schema"])))
    return found


async def test_every_example_in_the_document_is_accepted(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    bodies = _bodies(document)
    assert {path for path, _, _ in bodies} == {*JOB_PATHS, "/api/v1/estimate"}
    for path, example, _ in bodies:
        response = await client.post(path, json=example, headers=AUTH_HEADERS)
        assert response.status_code in (200, 202), (path, response.text)


def _errors(endpoint: str, body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Problem) as caught:
        validate_job_request(endpoint, body, None, allow_private_urls=False)
    assert caught.value.status == 422
    return {error.field: error.message for error in caught.value.errors}


def _accepted(endpoint: str, body: dict[str, Any]) -> None:
    validate_job_request(endpoint, body, None, allow_private_urls=False)


def _typed(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null member of an optional property's anyOf."""
    for option in prop.get("anyOf", [prop]):
        if option.get("type") != "null":
            return {**prop, **option}
    raise AssertionError(prop)


def _with(example: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(example)
    body["formState"][name] = value
    return body


@pytest.mark.parametrize("path", JOB_PATHS)
def test_documented_form_state_constraints_are_enforced(
    document: dict[str, Any], path: str
) -> None:
    endpoint = path.rsplit("/", 1)[1]
    [(_, example, request)] = [b for b in _bodies(document) if b[0] == path]
    assert request["additionalProperties"] is False
    form = _resolve(document, request["properties"]["formState"])
    assert form["additionalProperties"] is False
    assert _errors(endpoint, _with(example, "extra_knob", 1)) == {
        "formState.extra_knob": "formState.extra_knob is an unknown parameter"
    }
    for name, raw in form["properties"].items():
        prop, field = _typed(raw), f"formState.{name}"
        if "enum" in prop:
            for value in prop["enum"]:
                _accepted(endpoint, _with(example, name, value))
            assert list(_errors(endpoint, _with(example, name, "none-of-these"))) == [field]
        if prop.get("format") == "uri":
            assert _errors(endpoint, _with(example, name, "not a url")) == {
                field: f"{field} must be an http(s) URL"
            }
        if "maxLength" in prop:
            longest = "https://example.com/" if prop.get("format") == "uri" else ""
            longest += "x" * (prop["maxLength"] - len(longest))
            _accepted(endpoint, _with(example, name, longest))
            assert list(_errors(endpoint, _with(example, name, longest + "x"))) == [field]
        if "minimum" in prop:
            for value in (prop["minimum"], prop["maximum"]):
                _accepted(endpoint, _with(example, name, value))
            for value in (prop["minimum"] - 1, prop["maximum"] + 1):
                assert list(_errors(endpoint, _with(example, name, value))) == [field]


def test_every_required_member_is_required(document: dict[str, Any]) -> None:
    for path, _, request in _bodies(document):
        if path not in JOB_PATHS:
            continue
        endpoint = path.rsplit("/", 1)[1]
        form = _resolve(document, request["properties"]["formState"])
        complete = {name: "https://example.com/x" for name in form["required"]}
        _accepted(endpoint, {"formState": complete})
        for name in form["required"]:
            body = {"formState": {k: v for k, v in complete.items() if k != name}}
            assert _errors(endpoint, body) == {f"formState.{name}": f"formState.{name} is required"}
        assert _errors(endpoint, {}) == {"formState": "formState is required"}


def test_the_estimate_body_takes_each_job_endpoints_form_state(document: dict[str, Any]) -> None:
    estimate = document["components"]["schemas"]["EstimateRequest"]
    mapping = estimate["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(path.rsplit("/", 1)[1] for path in JOB_PATHS)
    requests = {path: schema for path, _, schema in _bodies(document)}
    for name, ref in mapping.items():
        variant = _resolve(document, {"$ref": ref})
        assert variant["additionalProperties"] is False
        assert "webhook" not in variant["properties"]
        assert variant["properties"]["model"]["const"] == name
        job_form = requests[f"/api/v1/{name}"]["properties"]["formState"]["$ref"]
        assert variant["properties"]["formState"]["$ref"] == job_form


JOB_CONTROL = {
    ("get", "/api/v1/jobs"): ("list-jobs", "200", {"401", "422", "429", "503"}),
    ("post", "/api/v1/jobs/{id}/cancel"): ("cancel-job", "200", {"401", "404", "409"}),
    ("delete", "/api/v1/jobs/{id}"): ("delete-job", "204", {"401", "404", "409"}),
    ("get", "/api/v1/jobs/{id}/webhook-deliveries"): (
        "list-webhook-deliveries",
        "200",
        {"401", "404"},
    ),
    ("post", "/api/v1/jobs/{id}/webhook-deliveries/redeliver"): (
        "redeliver-webhook",
        "202",
        {"401", "404", "409"},
    ),
}


def _problem_statuses(operation: dict[str, Any]) -> set[str]:
    return {
        status
        for status, response in operation["responses"].items()
        if "application/problem+json" in response.get("content", {})
    }


def test_job_control_routes_are_documented(document: dict[str, Any]) -> None:
    for (method, path), (name, success, problems) in JOB_CONTROL.items():
        operation = document["paths"][path][method]
        assert operation["operationId"] == name
        assert operation["security"] == [{"ApiKey": []}]
        assert success in operation["responses"], name
        assert problems <= _problem_statuses(operation), name
    listing = document["paths"]["/api/v1/jobs"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert set(params) == {"status", "model", "limit", "cursor"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    status = _typed(params["status"]["schema"])
    assert status["enum"] == ["processing", "completed", "failed", "canceled"]
    assert _typed(params["model"]["schema"])["enum"] == [
        "lipsync-video",
        "lipsync-image",
        "lipsync-image-multi",
    ]
    limit = params["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    ok = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/JobList"}
    cancel = document["paths"]["/api/v1/jobs/{id}/cancel"]["post"]
    assert "job_finished" in cancel["responses"]["409"]["description"]


def test_the_job_object_and_the_new_answers_are_described(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    job = schemas["Job"]["properties"]
    assert {"progress", "deletedAt"} <= set(job)
    progress = _resolve(document, _typed(job["progress"]))
    assert progress["properties"]["stage"]["enum"] == [
        "queued",
        "downloading",
        "rendering",
        "finishing",
    ]
    assert set(progress["required"]) == {"stage", "percent", "etaSeconds"}
    assert schemas["JobList"]["properties"]["data"]["items"] == {"$ref": "#/components/schemas/Job"}
    delivery = schemas["WebhookDelivery"]
    assert set(delivery["required"]) == {
        "attempt", "at", "statusCode", "latencyMs", "error", "nextAttemptAt"
    }  # fmt: skip
    assert set(schemas["WebhookDeliveries"]["properties"]) == {"data", "delivered"}
    assert set(schemas["RedeliveryAccepted"]["properties"]) == {"id", "status"}


def test_prefer_is_documented_where_it_works(document: dict[str, Any]) -> None:
    for path in (*JOB_PATHS, "/api/v1/jobs/{id}"):
        operation = document["paths"][path]["get" if path.endswith("{id}") else "post"]
        prefer = [p for p in operation["parameters"] if p["name"] == "Prefer"]
        assert len(prefer) == 1 and prefer[0]["in"] == "header", path
        assert "wait=N" in prefer[0]["description"]
        ok = "200" if path.endswith("{id}") else "202"
        assert "Preference-Applied" in operation["responses"][ok]["headers"], path
        assert "Prefer" in operation["responses"]["422"]["description"], path
    create = document["paths"]["/api/v1/lipsync-image"]["post"]
    accepted = create["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {
        "anyOf": [
            {"$ref": "#/components/schemas/JobCreated"},
            {"$ref": "#/components/schemas/Job"},
        ]
    }
    ended = create["responses"]["200"]["content"]["application/json"]["schema"]
    assert ended == {"$ref": "#/components/schemas/Job"}


def test_the_job_object_has_exactly_the_documented_members(document: dict[str, Any]) -> None:
    job = job_to_json(
        jobs_pb2.Job(
            id="j",
            status=jobs_pb2.JOB_STATUS_PROCESSING,
            spec=jobs_pb2.JobSpec(lipsync_image=jobs_pb2.LipsyncImageInputs(image="x")),
        )
    )
    properties = document["components"]["schemas"]["Job"]["properties"]
    assert set(job) == set(properties)
