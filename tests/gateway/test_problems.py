"""Every error, whoever raises it, is RFC 9457 problem+json."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from gateway import problems
from gateway.problems import FieldError, Problem, invalid_parameters, title
from tests.gateway.conftest import assert_problem


@pytest.fixture
async def bare() -> httpx.AsyncClient:
    """A tiny app with only the handlers installed."""
    app = FastAPI()
    problems.install(app)
    problems.set_type_base(app, "http://testserver")

    @app.get("/count")
    async def count(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    @app.get("/teapot")
    async def teapot() -> None:
        raise Problem(418, "teapot", "short and stout", extra={"hint": "tip me over"})

    # The server re-raises unexpected errors for logging; this client must not.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def test_body_shape() -> None:
    problem = invalid_parameters(
        [FieldError("formState.audio", "formState.audio must be an http(s) URL")]
    )
    assert problem.body() == {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "code": "invalid_parameter",
        "detail": "formState.audio must be an http(s) URL",
        "errors": [
            {"field": "formState.audio", "message": "formState.audio must be an http(s) URL"}
        ],
    }


def test_errors_member_is_left_out_when_empty() -> None:
    assert "errors" not in Problem(404, "not_found", "not found").body()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "Bad Request"),
        (413, "Content Too Large"),
        (422, "Unprocessable Content"),
        (599, "Error"),
    ],
)
def test_titles_are_the_rfc_9110_reason_phrases(status: int, expected: str) -> None:
    assert title(status) == expected


async def test_problem_extension_members(bare: httpx.AsyncClient) -> None:
    body = assert_problem(await bare.get("/teapot"), 418, "teapot")
    assert body["hint"] == "tip me over"


async def test_unknown_route(bare: httpx.AsyncClient) -> None:
    body = assert_problem(await bare.get("/nowhere"), 404, "not_found")
    assert body["title"] == "Not Found"


async def test_wrong_method(bare: httpx.AsyncClient) -> None:
    response = await bare.post("/count?n=1")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_framework_validation_errors(bare: httpx.AsyncClient) -> None:
    body = assert_problem(await bare.get("/count?n=many"), 422, "invalid_parameter")
    assert [error["field"] for error in body["errors"]] == ["n"]
    body = assert_problem(await bare.get("/count"), 422, "invalid_parameter")
    assert body["errors"][0]["field"] == "n"


async def test_unexpected_exception_is_500_without_details(bare: httpx.AsyncClient) -> None:
    response = await bare.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert body["detail"] == "internal error"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
