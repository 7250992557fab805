"""One editor session: a WebSocket, at most one run at a time, and its frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket, WebSocketState

from sandbox import SandboxError, Status, get_language
from server.audit import audit
from server.auth import TokenError, Tokens, bearer_token
from server.errors import ProtocolError, describe
from server.protocol import (
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    EofMessage,
    ErrorMessage,
    ExitMessage,
    LimitMessage,
    OutputMessage,
    PrepareMessage,
    RunMessage,
    SignalMessage,
    Started,
    StdinAck,
    StdinMessage,
)
from server.runs import Execution, RunService, RunSpec
from storage import Database

log = logging.getLogger(__name__)

GOING_AWAY = 1001
POLICY_VIOLATION = 1008


class Session:
    """Reads frames from one socket and drives its runs; failures become `error` frames."""

    def __init__(
        self,
        websocket: WebSocket,
        user_id: int,
        runs: RunService,
        max_frame_bytes: int,
        tokens: Tokens,
        db: Database,
        on_language: Callable[[], None] = lambda: None,
    ) -> None:
        self.websocket = websocket
        self.user_id = user_id
        self.runs = runs
        self.max_frame_bytes = max_frame_bytes
        # The token the socket was opened with, checked again at every run: a socket must
        # not outlive its token, or its user.
        self._token = bearer_token(websocket) or ""
        self._tokens = tokens
        self._db = db
        self.execution: Execution | None = None
        self.language: str | None = None
        """The language the editor has chosen (announced, or last run): the pool keeps a
        warm sandbox ready for each open session."""
        self._on_language = on_language
        self._relay: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    # Receiving ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle frames until the client goes; then stop whatever it left running."""
        try:
            while self.websocket.application_state is WebSocketState.CONNECTED:
                frame = await self.websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    return
                try:
                    await self._handle(self._parse(frame))
                except (ProtocolError, SandboxError) as exc:
                    await self.send(ErrorMessage(code=exc.code, message=exc.message))
                except Exception:
                    log.exception("frame from user %s failed", self.user_id)
                    await self.send(
                        ErrorMessage(
                            code="internal_error", message="the server failed; it is logged"
                        )
                    )
        finally:
            await self._abandon()

    def _parse(self, frame: Mapping[str, Any]) -> BaseModel:
        text = frame.get("text")
        if text is None:
            raise ProtocolError("binary_frame", "binary frames are not understood; send JSON text")
        if len(text) > self.max_frame_bytes or len(text.encode()) > self.max_frame_bytes:
            raise ProtocolError(
                "frame_too_large", f"frames are limited to {self.max_frame_bytes} bytes"
            )
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProtocolError("invalid_json", f"frame is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError("invalid_json", "a frame must be a JSON object")
        if data.get("type") not in CLIENT_TYPES:
            raise ProtocolError(
                "unknown_type",
                f"unknown message type {data.get('type')!r}; expected one of "
                + ", ".join(CLIENT_TYPES),
            )
        try:
            return CLIENT_MESSAGE.validate_python(data)
        except ValidationError as exc:
            raise ProtocolError("invalid_message", describe(exc)) from None

    async def _handle(self, message: BaseModel) -> None:
        if isinstance(message, PrepareMessage):
            self._choose(message.language)
            return
        if isinstance(message, RunMessage):
            if await self._authorized():
                self._choose(message.language)
                await self._start(message)
            return
        execution = self.execution
        if execution is None or execution.run.done:
            raise ProtocolError("no_active_run", "no run is active: start one with a run message")
        if isinstance(message, StdinMessage):
            await execution.write_stdin(message.data)
        elif isinstance(message, EofMessage):
            await execution.run.close_stdin()
        elif isinstance(message, SignalMessage):
            await execution.run.signal(message.signal)

    async def _authorized(self) -> bool:
        """Whether the socket's token and user are still good; if not, say so and close."""
        try:
            claims = self._tokens.decode(self._token)
            if claims.user_id != self.user_id or await self._db.get_user(self.user_id) is None:
                raise TokenError("the token's user does not exist any more")
        except TokenError as exc:
            if exc.code != "token_expired":
                audit("socket_token_refused", user=self.user_id, reason=str(exc))
            await self.send(ErrorMessage(code="unauthorized", message=f"{exc}; nothing was run"))
            with contextlib.suppress(Exception):
                await self.websocket.close(POLICY_VIOLATION, reason=str(exc)[:120])
            return False
        return True

    def _choose(self, language_id: str) -> None:
        """Note the session's language; an unknown one raises ``UnknownLanguage``."""
        language = get_language(language_id).id
        if language != self.language:
            self.language = language
            self._on_language()

    # Running --------------------------------------------------------------------------------

    async def _start(self, message: RunMessage) -> None:
        if self._relay is not None and not self._relay.done():
            raise ProtocolError("run_active", "a run is active: wait for its exit frame")
        spec = RunSpec(
            language=message.language,
            code=message.code,
            stdin=message.stdin,
            timeout=message.timeout,
            project_id=message.project_id,
            save_history=message.save_history,
        )
        try:
            self.execution = await self.runs.start(self.user_id, spec)
        except SandboxError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        self._relay = asyncio.create_task(self._relay_run(self.execution))

    async def _relay_run(self, execution: Execution) -> None:
        """Send one run's frames: started, output as it comes, limit, and exit exactly once."""
        run = execution.run
        await self.send(
            Started(
                run_id=run.id,
                language=run.language.id,
                version=run.version,
                stdin_window=run.stdin_window,
                execution_id=execution.record_id,
            )
        )
        acks = asyncio.create_task(self._acknowledge(execution))
        try:
            async for stream, text in execution.output():
                await self.send(OutputMessage(stream=stream, data=text))
            result, execution_id = await self.runs.finish(execution)
        finally:
            acks.cancel()
        if result.status is Status.OUTPUT_LIMIT:
            await self.send(
                LimitMessage(
                    limit="output",
                    message=f"output passed {self.runs.backend.limits.output_bytes} bytes: "
                    "the rest was cut and the program stopped",
                )
            )
        await self.send(
            ExitMessage(
                run_id=run.id,
                status=result.status,
                exit_code=result.exit_code,
                signal=result.signal,
                execution_time=result.execution_time,
                output_truncated=result.output_truncated,
                execution_id=execution_id,
            )
        )

    async def _acknowledge(self, execution: Execution) -> None:
        """Tell the client how much of its input the program took: its window moves on.

        Acknowledgements coalesce: each one carries the running total when it is sent.
        """
        taken = 0
        while True:
            taken = await execution.run.stdin_taken(taken)
            await self.send(StdinAck(bytes=taken))

    async def _abandon(self) -> None:
        """Kill the program, and wait until its run is stored and its exit frame sent."""
        if self._relay is None:
            return
        if self.execution is not None:
            await self.execution.run.kill()
        with contextlib.suppress(Exception):
            await self._relay

    async def shutdown(self) -> None:
        """Server shutdown, once the run service has stopped every run: let this session's
        exit frame out, then say goodbye."""
        if self._relay is not None:
            with contextlib.suppress(Exception):
                await self._relay
        with contextlib.suppress(Exception):
            await self.websocket.close(GOING_AWAY)

    # Sending --------------------------------------------------------------------------------

    async def send(self, message: BaseModel) -> None:
        """Send one frame; a client that already left is not an error."""
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            with contextlib.suppress(Exception):
                await self.websocket.send_text(message.model_dump_json())
