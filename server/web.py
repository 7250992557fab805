"""The browser editor: the page, its own files, and the pinned npm packages it uses."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"


# Defence in depth for the page: only our own scripts run, nothing is fetched elsewhere.
# Monaco needs inline styles and blob: workers; the favicon is a data: URL.
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def page(request: Request) -> Response:
    return FileResponse(WEB / "index.html", headers=HEADERS)


routes = [
    Route("/", page),
    Route("/projects/{project_id:int}/editor", page),
    Mount("/static", StaticFiles(directory=WEB / "static", check_dir=False), name="static"),
    Mount("/vendor", StaticFiles(directory=WEB / "node_modules", check_dir=False), name="vendor"),
]
