"""The errors this client raises, each with a stable ``code`` and a ``message`` for people."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the client raises."""

    code = "client_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ServerError(ClientError):
    """The server answered with an ``error`` frame; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


class ApiError(ClientError):
    """A REST call or the WebSocket handshake got an HTTP error ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.status = status


class Unauthorized(ApiError):
    """The server refused the credentials or the token (HTTP 401, or 403 on the handshake)."""


class ConnectFailed(ClientError):
    """The server could not be reached at all."""

    code = "connect_failed"


class ConnectionLost(ClientError):
    """The socket closed while the client still needed it; ``close_code`` is the server's."""

    code = "connection_lost"

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class InvalidFrame(ClientError):
    """The server sent something that is not a frame of the protocol."""

    code = "invalid_frame"
