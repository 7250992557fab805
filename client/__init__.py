"""A client for execstream: runs over its WebSocket, for test suites, scripts and terminals."""

from client.errors import (
    ApiError,
    ClientError,
    ConnectFailed,
    ConnectionLost,
    InvalidFrame,
    ServerError,
    Unauthorized,
)
from client.rest import languages, login, register
from client.result import Event, RunResult
from client.ws import ExecClient, ws_url
from server.protocol import Queued

__all__ = [
    "ApiError",
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "Event",
    "ExecClient",
    "InvalidFrame",
    "Queued",
    "RunResult",
    "ServerError",
    "Unauthorized",
    "languages",
    "login",
    "register",
    "ws_url",
]
