"""The try-it page at `/` (TRY_PAGE=false: none): a small editor, no build step, with the
official socket.io client vendored from npm (app/static/socket.io.LICENSE)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
# The page's own policy: its scripts, styles and connections from this server only.
PAGE_POLICY = "default-src 'self'; connect-src 'self'; frame-ancestors 'none'"


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "index.html",
        headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"},
    )


def register(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC)
