"""The OpenAPI document describes the hand-validated bodies and problem answers."""

from __future__ import annotations

import httpx


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
    form = schemas["ImageMultiFormState"]
    assert set(form["required"]) == {"image", "left_audio", "right_audio"}
    assert form["properties"]["order"]["enum"] == ["left_right", "right_left", "meanwhile"]
    assert form["additionalProperties"] is False

    assert create["operationId"] == "lipsync-image-multi"
    assert create["security"] == [{"ApiKey": []}]
    assert {"202", "400", "401", "402", "409", "413", "422"} <= set(create["responses"])
    problem = create["responses"]["402"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/ProblemDoc"}
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key"]


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
