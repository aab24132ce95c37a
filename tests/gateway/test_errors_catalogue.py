"""The errors catalogue lists every problem `code` the gateway can answer.

The codes are found in the gateway's source, not in a list kept by hand next
to the catalogue: every `Problem(status, code, ...)` call is read from the
syntax tree. A literal code is taken as it is; a name is looked up among the
module's constants; a code computed at run time is resolved from what it can
be (the string constants and module dictionaries it is built from, or, for job
control, the conflicts each call accepts). A call the test cannot resolve
fails it, so a new kind of call cannot slip past.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx

from gateway import errors_catalogue, routes_job_control
from gateway.problems import Problem

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# Codes computed from a value these resolvers know, by (module, variable).
RESOLVERS = {
    ("gateway.routes_job_control", "reason"): lambda: {
        code
        for name, value in vars(routes_job_control).items()
        if name.endswith("_CONFLICTS") and isinstance(value, dict)
        for code in value
    },
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(GATEWAY.parent).with_suffix("").parts)


def _problem_calls(tree: ast.AST) -> Iterator[tuple[ast.Call, ast.FunctionDef | None]]:
    """Each Problem(...) call with the function that makes it."""

    def walk(
        node: ast.AST, function: ast.FunctionDef | None
    ) -> Iterator[tuple[ast.Call, ast.FunctionDef | None]]:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call):
                func = child.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name == Problem.__name__:
                    yield child, function
            yield from walk(child, inner)  # type: ignore[arg-type]

    yield from walk(tree, None)


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _computed(module: object, function: ast.FunctionDef | None, name: str) -> set[str]:
    """The codes a local variable can hold: constants and module dictionaries it is built of."""
    codes: set[str] = set()
    if function is None:
        return codes
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign):
            continue
        if not any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            continue
        for part in ast.walk(node.value):
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                if CODE.match(part.value):
                    codes.add(part.value)
            elif isinstance(part, ast.Name) and isinstance(getattr(module, part.id, None), dict):
                table = getattr(module, part.id)
                codes |= {value for value in table.values() if isinstance(value, str)}
    return codes


def answered_codes() -> dict[str, set[int | None]]:
    """Every code a Problem of the gateway can carry, with the statuses it is sent with."""
    found: dict[str, set[int | None]] = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        name = _module_name(path)
        module = importlib.import_module(name)
        for call, function in _problem_calls(ast.parse(path.read_text(), str(path))):
            status_node = _argument(call, 0, "status")
            status = (
                status_node.value
                if isinstance(status_node, ast.Constant) and isinstance(status_node.value, int)
                else None
            )
            node = _argument(call, 1, "code")
            where = f"{path.name}:{call.lineno}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                codes = {node.value}
            elif isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), str):
                codes = {getattr(module, node.id)}
            elif isinstance(node, ast.Name) and (name, node.id) in RESOLVERS:
                codes = RESOLVERS[(name, node.id)]()
            elif isinstance(node, ast.Name):
                codes = _computed(module, function, node.id)
            else:
                codes = set()
            assert codes, f"{where}: cannot tell which code this Problem carries; add a resolver"
            for code in codes:
                found.setdefault(code, set()).add(status)
    return found


def test_the_scan_finds_codes_of_every_kind_of_call() -> None:
    found = answered_codes()
    # Literal, module constant, computed from a table, resolved from job control's conflicts.
    for code in ("insufficient_credits", "invalid_signature", "method_not_allowed", "job_finished"):
        assert code in found, code
    assert "client_error" in found and "server_error" in found


def test_every_code_the_gateway_answers_is_in_the_catalogue() -> None:
    catalogue = {entry.code: entry for entry in errors_catalogue.CATALOGUE}
    missing = sorted(set(answered_codes()) - set(catalogue))
    assert not missing, f"add these codes to gateway/errors_catalogue.py: {missing}"
    for code, statuses in answered_codes().items():
        known = {status for status in statuses if status is not None}
        assert known <= {catalogue[code].status}, (code, known, catalogue[code].status)


def test_entries_are_unique_and_described() -> None:
    codes = [entry.code for entry in errors_catalogue.CATALOGUE]
    assert len(codes) == len(set(codes))
    for entry in errors_catalogue.CATALOGUE:
        assert CODE.match(entry.code), entry.code
        assert 400 <= entry.status < 600
        assert entry.description.endswith(".") and len(entry.description) > 20


async def test_the_catalogue_is_public_and_problems_point_into_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/errors")
    assert response.status_code == 200
    assert "public" in response.headers["cache-control"]
    data = response.json()["data"]
    assert {tuple(sorted(entry)) for entry in data} == {("code", "description", "status", "title")}
    by_code = {entry["code"]: entry for entry in data}
    assert by_code["insufficient_credits"]["status"] == 402
    assert by_code["insufficient_credits"]["title"] == "Payment Required"
    assert by_code["invalid_parameter"]["title"] == "Unprocessable Content"
    missing = await client.get("/api/v1/jobs/not-a-job", headers={"Authorization": "Bearer x"})
    assert missing.json()["type"] == "http://testserver/api/v1/errors#unauthorized"
    unknown = await client.get("/api/v1/nothing-here")
    assert unknown.json()["type"] == "http://testserver/api/v1/errors#not_found"
    assert unknown.json()["code"] in by_code


def test_a_problem_outside_an_app_is_about_blank() -> None:
    assert Problem(404, "not_found", "not found").body()["type"] == "about:blank"
    assert Problem(404, "not_found", "x").body("https://api.example/api/v1/errors")["type"] == (
        "https://api.example/api/v1/errors#not_found"
    )
