"""The console and /docs pages: strict headers, no inline code, nothing from another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from gateway.routes_console import CONSOLE_DIR
from tests.gateway.conftest import SESSION_HEADERS

PAGES = ["/", "/console", "/console/", "/docs"]


class Page(HTMLParser):
    """The URLs an HTML page loads, and any inline code or style it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in ("src", "href"):
            if name in values:
                self.urls.append(values[name])
        if tag == "style" or "style" in values:
            self.inline.append(f"style on <{tag}>")
        self.inline += [f"{name} on <{tag}>" for name in values if name.startswith("on")]
        if values.get("href", "").startswith("javascript:"):
            self.inline.append(f"javascript: URL on <{tag}>")
        self._in_script = tag == "script"
        if tag == "script" and "src" not in values:
            self.inline.append("<script> without src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script text")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", PAGES)
async def test_pages_carry_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    # Requests go back to this gateway only (its public URL is the same server).
    assert policy["connect-src"] == ["'self'", "http://testserver"]
    for values in policy.values():
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:"} & set(values)


@pytest.mark.parametrize("path", PAGES)
async def test_pages_have_no_inline_code_and_load_only_local_files(
    client: httpx.AsyncClient, path: str
) -> None:
    page = parse((await client.get(path)).text)
    assert page.inline == []
    assert page.urls
    for url in page.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        loaded = await client.get(url)
        assert loaded.status_code == 200, url


async def test_console_page_is_the_same_for_everybody(client: httpx.AsyncClient) -> None:
    """Nothing is rendered into the page from the server, a session's secrets least of all."""
    anonymous = await client.get("/console")
    signed_in = await client.get("/console", headers=SESSION_HEADERS)
    assert anonymous.content == signed_in.content == (CONSOLE_DIR / "index.html").read_bytes()
    assert anonymous.headers["cache-control"] == "no-cache"


async def test_console_scripts_import_only_local_modules(client: httpx.AsyncClient) -> None:
    """Every ES module import is relative and served; no URL of another host in any file."""
    seen: set[str] = set()
    pending = ["app.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = await client.get(f"/console/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["x-content-type-options"] == "nosniff"
        imports = re.findall(r'^import .*? from "([^"]+)";$', response.text, flags=re.M | re.S)
        for target in imports:
            assert target.startswith("./"), (name, target)
            pending.append(target.removeprefix("./"))
    on_disk = {path.name for path in CONSOLE_DIR.glob("*.js")}
    assert seen == on_disk
    for path in CONSOLE_DIR.rglob("*"):
        if path.suffix in {".js", ".css", ".html"}:
            text = path.read_text()
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.I), path
            # No script builds markup from strings: every element comes from textContent.
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text, path
            # Inline styles set from a script would need 'unsafe-inline' too.
            assert ".style." not in text and '"style"' not in text, path


async def test_docs_uses_the_local_swagger_ui(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "/docs/assets/swagger-ui.css" in page
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    start = (await client.get("/docs/assets/docs.js")).text
    assert 'url: "/openapi.json"' in start and "validatorUrl: null" in start
    css = await client.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/index.html",
        "/console/assets/nope.js",
        "/console/assets/..%2Frouters.py",
        "/console/assets/%2e%2e%2fapp.py",
        "/docs/assets/index.html",
        "/docs/assets/swagger-ui.js.map",
    ],
)
async def test_only_listed_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    # A name with a slash in it matches no route at all: the API's own 404.
    assert (await client.get(path)).status_code == 404


async def test_console_and_docs_stay_out_of_the_api_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path in PAGES or "/assets/" in path]
