"""The web console and the API docs page: static files served with strict headers.

`/` and `/console` (with or without the slash) answer the console's one HTML
page; its scripts, styles and icon are under `/console/assets/`, and the Swagger
UI of `/docs` under `/docs/assets/`, from the `fastapi-offline` package, so
neither page loads anything from another host and both work offline.

The rules that keep a stolen page or a script injection harmless:
- only files listed at import time are served (a name from the URL is looked up
  in a dict, never joined to a path), so no request can read another file;
- every page carries a Content-Security-Policy without 'unsafe-inline' or
  'unsafe-eval': scripts and styles come from this origin only, the page makes
  requests to this origin only (`connect-src`), and cannot be framed;
- the server never renders anything into the HTML: the page is the same bytes
  for everybody, and the session token lives in the browser (README).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import Response

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
# Swagger UI 5 as the `fastapi-offline` package ships it (only its files are used).
SWAGGER_DIR = Path(str(resources.files("fastapi_offline") / "static"))
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The only files of the Swagger UI package that /docs needs.
_SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def _asset(path: Path) -> Asset:
    return Asset(path.read_bytes(), _MEDIA_TYPES[path.suffix])


def console_assets() -> dict[str, Asset]:
    """Every file of the console folder but the page itself, by name."""
    return {
        path.name: _asset(path)
        for path in sorted(CONSOLE_DIR.iterdir())
        if path.is_file() and path.suffix in _MEDIA_TYPES and path.name != "index.html"
    }


def docs_assets() -> dict[str, Asset]:
    assets = {name: _asset(SWAGGER_DIR / name) for name in _SWAGGER_FILES}
    # Swagger UI's own start script, without its inline `window.onload`.
    assets["docs.js"] = _asset(CONSOLE_DIR / "docs" / "docs.js")
    return assets


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(public_url: str) -> str:
    """The policy of both pages. The public URL's origin is named besides 'self'
    because job outputs (the console's `<video>`) and the API servers of /docs
    are absolute URLs under it, which may be another host than the one the
    person typed (127.0.0.1 against localhost, a proxy in front)."""
    public = _origin(public_url)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            # Swagger UI's icons are data: URIs in its stylesheet.
            "img-src 'self' data:",
            f"media-src 'self' {public}",
            f"connect-src 'self' {public}",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(public_url: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(public_url),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def router(public_url: str) -> APIRouter:
    headers = security_headers(public_url)
    page = (CONSOLE_DIR / "index.html").read_bytes()
    docs_page = (CONSOLE_DIR / "docs" / "index.html").read_bytes()
    console_files = console_assets()
    docs_files = docs_assets()
    api = APIRouter(include_in_schema=False)

    def html(body: bytes) -> Response:
        # The page is tiny and changes with each release: never cached stale.
        return Response(
            body, media_type=_MEDIA_TYPES[".html"], headers={**headers, "Cache-Control": "no-cache"}
        )

    def asset(files: dict[str, Asset], name: str) -> Response:
        found = files.get(name)
        if found is None:
            return Response(b"not found", status_code=404, media_type="text/plain", headers=headers)
        return Response(
            found.body,
            media_type=found.media_type,
            headers={**headers, "Cache-Control": "no-cache"},
        )

    @api.get("/")
    @api.get("/console")
    @api.get("/console/")
    async def console_page() -> Response:
        return html(page)

    @api.get("/console/assets/{name}")
    async def console_asset(name: str) -> Response:
        return asset(console_files, name)

    @api.get("/docs")
    async def docs() -> Response:
        return html(docs_page)

    @api.get("/docs/assets/{name}")
    async def docs_asset(name: str) -> Response:
        return asset(docs_files, name)

    return api
