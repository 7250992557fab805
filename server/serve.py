"""Serve the app with uvicorn, draining live sessions before connections are cut."""

from __future__ import annotations

import logging
import re
import socket
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.server import STARTUP_FAILURE

from sandbox import SandboxError
from server.app import create_app
from server.audit import logger as audit_logger
from server.config import Settings
from server.services import Services

log = logging.getLogger("execstream")


class RedactTokens(logging.Filter):
    """Browsers put their token in the WebSocket's query string; keep it out of the logs.

    Redacts in place, keeping ``record.args`` a tuple: uvicorn's access formatter unpacks it.
    """

    pattern = re.compile(r"(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self.redact(value) for key, value in record.args.items()}
        return True

    def redact(self, value: Any) -> Any:
        return self.pattern.sub(r"\1[redacted]", value) if isinstance(value, str) else value


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


def audit_to_output() -> None:
    """Audit entries go out bare, one JSON object per line, whatever the log level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit_logger.handlers[:] = [handler]
    audit_logger.setLevel(logging.INFO)
    audit_logger.propagate = False


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    audit_to_output()
    app = create_app(settings)
    trusted = settings.trusted_proxy_list
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Forwarded headers are believed only from the proxies named in the settings
        # (uvicorn trusts 127.0.0.1 by default: an attacker on the host could claim any address).
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        ws="websockets-sansio",
        # A frame over the limit gets an ``error`` frame from the session and the socket
        # stays; uvicorn drops only frames of more than twice that, so memory stays bounded.
        ws_max_size=2 * settings.max_frame_bytes,
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
