"""The web pages: market overview, instrument, trader and regulator pages (Vietnamese first).

Static HTML, CSS and JavaScript modules from `api/web/`, served by the exchange itself so a
farmer needs nothing but a phone browser. The pages only ever call the public API (`/v1/...`
and the `/v1/ws` feed) from the browser, with the caller's own key; the server side adds
nothing but the files and strict security headers. Kept out of the OpenAPI document: they are
not part of the API contract, and the API tests build their matrices from that document.

Every asset is local (the charting library is vendored under `web/assets/vendor/`), and the
Content-Security-Policy forbids loading anything from anywhere else, or running inline code.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent / "web"
ASSETS_DIR = WEB_DIR / "assets"
PAGES = {
    "": "index.html",
    "index": "index.html",
    "instrument": "instrument.html",
    "trader": "trader.html",
    "regulator": "regulator.html",
}
# Scripts and styles from this origin only (no inline code, no eval); the feed is same-origin.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return RedirectResponse("/web/", status_code=307)


@router.api_route("/web", methods=["GET", "HEAD"])
async def web_root() -> Response:
    return RedirectResponse("/web/", status_code=307)


@router.api_route("/web/", methods=["GET", "HEAD"])
async def overview() -> Response:
    return await page("")


@router.api_route("/web/{page}", methods=["GET", "HEAD"])
async def page(page: str) -> Response:
    name = PAGES.get(page.removesuffix(".html"))
    if name is None:
        raise HTTPException(404, f"no page {page[:40]!r}")
    return FileResponse(WEB_DIR / name, media_type="text/html", headers=PAGE_HEADERS)


class Assets(StaticFiles):
    """Static files with the pages' security headers, revalidated on every load (ETags)."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Mount the pages and their assets on `app`."""
    app.include_router(router)
    app.mount("/web/assets", Assets(directory=ASSETS_DIR), name="web-assets")
