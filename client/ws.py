"""``ExecClient``: one WebSocket to execstream, its runs as typed events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from client.errors import (
    ClientError,
    ConnectFailed,
    ConnectionLost,
    InvalidFrame,
    ServerError,
    Unauthorized,
)
from client.result import Event, RunResult
from server.protocol import (
    SERVER_MESSAGE,
    Attached,
    AttachMessage,
    ClientMessage,
    EofMessage,
    ErrorMessage,
    ExitMessage,
    FileModel,
    PrepareMessage,
    RunMessage,
    ServerMessage,
    SignalMessage,
    SignalName,
    Started,
    StdinAck,
    StdinMessage,
)

WS_PATH = "/api/v1/code/ws"

# Characters per stdin frame: even if every one is a control character that JSON spells as
# six bytes, the frame stays under the server's 128 KB limit.
_STDIN_CHUNK = 16 * 1024
_UTF8_MAX = 4  # bytes per character, at most

Phase = Literal["idle", "starting", "running"]


def ws_url(url: str) -> str:
    """The socket's address: a ws(s) URL as given, or derived from an http(s) base URL."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return url
    if parts.scheme not in ("http", "https"):
        raise ClientError(f"not an http(s) or ws(s) URL: {url!r}", code="invalid_url")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + WS_PATH, "", ""))


class ExecClient:
    """An execstream WebSocket, used as ``async with ExecClient(url, token) as client``.

    One run at a time: ``stream`` or ``run`` it, and meanwhile ``send_stdin``, ``send_eof``
    and ``send_signal`` from any task. ``send`` and ``receive`` are the raw frames.

    Input follows the protocol's flow control: at most the run's ``stdin_window`` bytes are
    in flight (sent, not yet acknowledged by a ``stdin_ack``), so ``send_stdin`` waits while
    the program does not read; it needs someone reading the run's frames meanwhile (the
    ``stream`` being iterated). Signals never wait behind input.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        token_in_query: bool = False,
        open_timeout: float | None = 10,
    ) -> None:
        self.url = ws_url(url)
        self.token = token
        self.token_in_query = token_in_query
        """Send the token as ``?token=`` (what a browser must do) instead of a header."""
        self.open_timeout = open_timeout
        self._websocket: ClientConnection | None = None
        self._running = False
        # Flow control of the current run's input (docs/protocol.md, "Flow control").
        self._phase: Phase = "idle"
        self._window = 0
        self._sent = 0
        self._acked = 0
        self._credit = asyncio.Event()
        """Set whenever what may be sent changes: a window opens or grows, a run ends."""
        self._stdin_lock = asyncio.Lock()
        self._lost: ConnectionLost | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def websocket(self) -> ClientConnection:
        """The underlying connection, for frames the protocol does not allow (binary, say)."""
        if self._websocket is None:
            raise ClientError("not connected: use `async with ExecClient(...)`", "not_connected")
        return self._websocket

    async def connect(self) -> None:
        url, headers = self.url, {}
        if self.token and self.token_in_query:
            url += ("&" if urlsplit(url).query else "?") + urlencode({"token": self.token})
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            self._websocket = await connect(
                url, additional_headers=headers, open_timeout=self.open_timeout
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                message = f"the server refused the socket (HTTP {status}): no token, or a bad one"
                raise Unauthorized(status, "unauthorized", message) from exc
            raise ConnectFailed(f"{self.url} answered HTTP {status}, not a WebSocket") from exc
        except (OSError, WebSocketException) as exc:
            raise ConnectFailed(f"cannot connect to {self.url}: {exc}") from exc

    async def close(self) -> None:
        """Close the socket; the server kills a program still running."""
        if self._websocket is not None:
            await self._websocket.close()

    # Runs ------------------------------------------------------------------------------------

    async def stream(
        self,
        language: str,
        code: str,
        *,
        stdin: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the run's limit)
        project_id: int | None = None,
        save_history: bool = True,
        files: dict[str, str] | None = None,
    ) -> AsyncIterator[Event]:
        """Start a run; yield its events as they come, up to and including its ``exit``.

        An ``error`` frame raises ``ServerError``. ``stdin`` given here is the whole input,
        of any size: it is sent as the program reads it, then end-of-file. Leave it out to
        type with ``send_stdin``. A stream left before its ``exit`` leaves the run going: the
        socket cannot start another.
        """
        if self._running:
            raise ClientError("the previous run on this socket has not ended", "run_active")
        run = RunMessage(
            type="run",
            language=language,
            code=code,
            timeout=timeout,
            project_id=project_id,
            save_history=save_history,
            # None when there are none: left out, as servers before multi-file programs want.
            files=[FileModel(name=n, content=c) for n, c in files.items()] if files else None,
        )
        await self.send(run)
        self._running = True
        started = False
        feeder: asyncio.Task[None] | None = None
        try:
            while True:
                message = await self.receive()
                if isinstance(message, StdinAck):
                    continue
                if isinstance(message, ErrorMessage):
                    if message.code == "no_active_run":
                        # A stdin, eof or signal frame that crossed the end of a run: harmless.
                        continue
                    # Before `started` the error answers the run, which never began.
                    self._running = started
                    raise ServerError(message.code, message.message)
                if isinstance(message, Started):
                    started = True
                    if stdin is not None:
                        feeder = asyncio.create_task(self._feed(stdin))
                # Cleared before yielding: a caller may stop iterating at the exit event.
                self._running = not isinstance(message, ExitMessage)
                yield message
                if not self._running:
                    return
        finally:
            if feeder is not None:
                feeder.cancel()

    async def attach(self, run_id: str) -> AsyncIterator[Event]:
        """Resume a live run of this user's (its socket was lost, or another holds it): yield
        ``Attached``, the run's frames so far (its replay), then its live events up to its
        ``exit``. ``send_stdin`` works again once ``Attached`` arrived. An unknown run, or
        another user's, raises ``ServerError`` (``run_not_found``)."""
        if self._running:
            raise ClientError("the previous run on this socket has not ended", "run_active")
        await self.send(AttachMessage(type="attach", run_id=run_id))
        self._running = True
        while True:
            message = await self.receive()
            if isinstance(message, StdinAck):
                continue
            if isinstance(message, ErrorMessage):
                if message.code == "no_active_run":
                    continue
                self._running = self._phase == "running"
                raise ServerError(message.code, message.message)
            self._running = not isinstance(message, ExitMessage)
            yield message
            if not self._running:
                return

    async def run(
        self,
        language: str,
        code: str,
        *,
        stdin: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the run's limit)
        project_id: int | None = None,
        save_history: bool = True,
        on_event: Callable[[Event], object] | None = None,
        files: dict[str, str] | None = None,
    ) -> RunResult:
        """Run a program to its end; ``on_event`` sees each event as it arrives."""
        events = []
        async for event in self.stream(
            language,
            code,
            stdin=stdin,
            timeout=timeout,
            project_id=project_id,
            save_history=save_history,
            files=files,
        ):
            if on_event is not None:
                on_event(event)
            events.append(event)
        return RunResult.from_events(events)

    async def send_stdin(self, data: str) -> None:
        """Type ``data`` into the running program, as fast as it reads it.

        Waits for room in the run's window (and, right after ``run``, for its ``started``).
        Input with no run going (none started, or it has ended) is dropped.
        """
        async with self._stdin_lock:
            start = 0
            while start < len(data):
                if not await self._room(0):
                    return
                # A frame never needs more than the whole window, however small it is.
                piece = data[start : start + min(_STDIN_CHUNK, max(self._window // _UTF8_MAX, 1))]
                size = len(piece.encode(errors="surrogatepass"))
                if not await self._room(size):
                    return
                self._sent += size
                await self.send(StdinMessage(type="stdin", data=piece))
                start += len(piece)

    async def send_eof(self) -> None:
        """Close the running program's stdin, after the input sent before it."""
        async with self._stdin_lock:
            await self.send(EofMessage(type="eof"))

    async def _room(self, size: int) -> bool:
        """Wait until ``size`` more bytes fit in the window; ``False`` once the run is over."""
        while True:
            if self._lost is not None:
                raise self._lost
            if self._phase == "idle":
                return False
            if self._phase == "running" and self._sent - self._acked + size <= self._window:
                return True
            self._credit.clear()
            await self._credit.wait()

    async def _feed(self, stdin: str) -> None:
        """The whole input of ``stream(stdin=...)``, then end-of-file."""
        with contextlib.suppress(ClientError):  # a lost connection is the stream's to report
            await self.send_stdin(stdin)
            await self.send_eof()

    async def send_signal(self, signal: SignalName = "SIGINT") -> None:
        await self.send(SignalMessage(type="signal", signal=signal))

    async def prepare(self, language: str, preload: bool = False) -> None:
        """Tell the server this client will run ``language``: it keeps a warm sandbox ready
        for it while the socket is open; with ``preload``, one that imported ahead what the
        program imports (the language's ``preload_for`` matches it, as a plot's code does).
        An unknown language comes back as an error frame."""
        await self.send(PrepareMessage(type="prepare", language=language, preload=preload))

    # Frames ----------------------------------------------------------------------------------

    async def send(self, message: ClientMessage) -> None:
        if isinstance(message, RunMessage | AttachMessage):
            self._phase = "starting"
        await self.send_text(message.model_dump_json(exclude_none=True))

    async def send_json(self, data: Any) -> None:
        """Send any JSON value as a text frame, valid or not: for testing the server."""
        await self.send_text(json.dumps(data))

    async def send_text(self, text: str) -> None:
        try:
            await self.websocket.send(text)
        except ConnectionClosed as exc:
            raise _lost(exc) from exc

    async def receive(self) -> ServerMessage:
        """The next frame from the server, whatever it is."""
        try:
            frame = await self.websocket.recv()
        except ConnectionClosed as exc:
            self._lost = _lost(exc)
            self._credit.set()
            raise self._lost from exc
        try:
            message = SERVER_MESSAGE.validate_json(frame)
        except ValidationError as exc:
            raise InvalidFrame(f"not a frame of the protocol: {frame[:200]!r}") from exc
        self._follow(message)
        return message

    def _follow(self, message: ServerMessage) -> None:
        """Keep the flow control's books: a run's window opens, moves on, and closes."""
        if isinstance(message, Started):
            self._phase, self._window, self._sent, self._acked = (
                "running",
                message.stdin_window,
                0,
                0,
            )
        elif isinstance(message, Attached):
            self._phase, self._window = "running", message.stdin_window
            self._sent, self._acked = message.stdin_sent, message.stdin_acked
        elif isinstance(message, StdinAck):
            self._acked = max(self._acked, message.bytes)
        elif isinstance(message, ExitMessage) or (
            isinstance(message, ErrorMessage)
            and self._phase == "starting"
            and message.code != "no_active_run"
        ):
            self._phase = "idle"
        else:
            return
        self._credit.set()


def _lost(exc: ConnectionClosed) -> ConnectionLost:
    code = exc.rcvd.code if exc.rcvd is not None else None
    return ConnectionLost(f"the connection to the server was lost ({exc})", code)
