"""Interactive API docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``) that work offline.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so they are blank on a machine
without internet access (and leak the docs visit to a third party). The same JavaScript and CSS
ship inside the ``fastapi-offline`` wheel (Swagger UI 5, which renders OpenAPI 3.1); facetrust
serves those files itself at ``/docs-assets/`` and builds the two pages with FastAPI's own HTML
helpers pointed at them. Only the static files of that package are used.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "docs_assets_dir", "install_docs"]

ASSETS_URL = "/docs-assets"
_ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def docs_assets_dir() -> Path | None:
    """The folder holding Swagger UI and ReDoc inside the installed ``fastapi-offline`` wheel.

    Found without importing the package; ``None`` when it is missing or incomplete.
    """
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    if all((folder / name).is_file() for name in _ASSET_FILES):
        return folder
    return None


def _with_csp(page: HTMLResponse) -> HTMLResponse:
    """``page`` with a Content-Security-Policy that lets only its own inline script run (by a
    per-response nonce) and loads everything else from this server; framing is refused."""
    nonce = secrets.token_urlsafe(16)
    html = re.sub(r"<script(?=[\s>])", f'<script nonce="{nonce}"', page.body.decode())
    csp = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    headers = {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"}
    return HTMLResponse(html, status_code=page.status_code, headers=headers)


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and the assets they load. The app must be created with
    ``docs_url=None, redoc_url=None``. Without the assets the pages say what is missing
    (``/openapi.json`` works either way)."""
    folder = docs_assets_dir()
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    if folder is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")

    def _missing() -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><title>API docs unavailable</title><p>The interactive docs need "
            "the <code>fastapi-offline</code> package (it holds Swagger UI and ReDoc); "
            f'reinstall facetrust. The schema is at <a href="{openapi_url}">{openapi_url}</a>.',
            status_code=503,
        )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        if folder is None:
            return _missing()
        root = request.scope.get("root_path", "")
        return _with_csp(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{title} - API docs",
                oauth2_redirect_url=root + redirect_url,
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            )
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _with_csp(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        if folder is None:
            return _missing()
        root = request.scope.get("root_path", "")
        return _with_csp(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{title} - API reference",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
