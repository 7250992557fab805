"""The browser editor: the page, its own files, and the pinned npm packages it uses."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"


async def page(request: Request) -> Response:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


routes = [
    Route("/", page),
    Route("/projects/{project_id:int}/editor", page),
    Mount("/static", StaticFiles(directory=WEB / "static", check_dir=False), name="static"),
    Mount("/vendor", StaticFiles(directory=WEB / "node_modules", check_dir=False), name="vendor"),
]
