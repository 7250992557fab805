"""Serve the app with uvicorn, draining live sessions before connections are cut."""

from __future__ import annotations

import logging
import re
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from uvicorn.server import STARTUP_FAILURE

from sandbox import SandboxError
from server.app import create_app
from server.config import Settings
from server.services import Services

log = logging.getLogger("execstream")

# Room for the largest legal frame and then some: bigger frames are refused by our own
# check with an ``error`` frame; only absurd ones make uvicorn drop the connection.
WS_MAX_SIZE = 4 * 1024 * 1024


class RedactTokens(logging.Filter):
    """Browsers put their token in the WebSocket's query string; keep it out of the logs."""

    pattern = re.compile(r"(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = self.pattern.sub(r"\1[redacted]", str(record.msg))
        return True


class DrainingServer(uvicorn.Server):
    """Uvicorn cuts WebSockets at shutdown; first let each session send its ``exit`` frame."""

    def __init__(self, config: uvicorn.Config, app: Starlette, settings: Settings) -> None:
        super().__init__(config)
        self.app = app
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Opened here rather than in the app's lifespan, whose failures uvicorn logs as a
        # traceback: an operator whose engine lacks runsc or the image gets one clear line.
        try:
            self.app.state.services = await Services.open(self.settings)
        except SandboxError as exc:
            log.error("cannot start: %s", exc)
            sys.exit(STARTUP_FAILURE)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.app.state, "services", None)
        if state is not None:
            await state.drain()
        await super().shutdown(sockets)


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="websockets-sansio",
        ws_max_size=WS_MAX_SIZE,
        # Frames are small JSON and output is capped at 10 KB: compression saves little and
        # its per-socket state is half the memory of an idle session.
        ws_per_message_deflate=False,
        lifespan="on",
        timeout_graceful_shutdown=15,
    )
    server = DrainingServer(config, app, settings)
    # Uvicorn sets its loggers up when the config loads; filters go on after that.
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactTokens())
    server.run()
