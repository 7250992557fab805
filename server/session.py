"""One editor session: a WebSocket, at most one run at a time, and its frames."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket, WebSocketState

from sandbox import Image, SandboxError, SourceFile, Stage, Status, get_language
from sandbox.languages import wants_preload
from server.audit import audit
from server.auth import TokenError, Tokens, bearer_token
from server.errors import ProtocolError, describe
from server.protocol import (
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    AttachMessage,
    EofMessage,
    ErrorMessage,
    ExitMessage,
    ImageMessage,
    LimitMessage,
    OutputMessage,
    PrepareMessage,
    Queued,
    RunMessage,
    SignalMessage,
    StageMessage,
    Started,
    StdinAck,
    StdinMessage,
    TestCaseModel,
    TestMessage,
)
from server.reattach import Channel, LiveRuns
from server.runs import Execution, RunService, RunSpec
from server.testrun import TestCase, TestResult, elapsed_since, run_tests, store
from storage import Database

log = logging.getLogger(__name__)

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TAKEN_OVER = 4000
"""Close code of a socket whose run another socket attached to (a second tab, a reload)."""

Phase = Literal["idle", "queued", "starting", "running", "testing"]


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
        live: LiveRuns | None = None,
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
        self.preload = False
        """Its program starts sooner in a preloading sandbox (it imports matplotlib)."""
        self._on_language = on_language
        self._relay: asyncio.Task[None] | None = None
        self._phase: Phase = "idle"
        self._launched = asyncio.Event()
        """Set once the current run has started, or failed to."""
        self._leaving = False
        self._held: list[StdinMessage | EofMessage] = []
        """Input sent before the run started (it may wait for its turn), given to it then."""
        self._held_bytes = 0
        self._send_lock = asyncio.Lock()
        self._live = live or LiveRuns(grace=0, replay_bytes=0)
        self._channel: Channel | None = None
        """The run this socket holds, started here or attached to."""

    # Receiving ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle frames until the client goes; then stop whatever it left running."""
        with self.runs.metrics.sessions.track_inprogress():
            await self._serve()

    async def _serve(self) -> None:
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
            self._choose(message.language, message.preload)
            return
        if isinstance(message, RunMessage):
            if await self._authorized():
                self._start(message)
            return
        if isinstance(message, AttachMessage):
            if await self._authorized():
                await self._attach(message.run_id)
            return
        if self._phase == "queued" and isinstance(message, SignalMessage):
            await self._leave_queue()
            return
        if self._phase == "testing":
            await self._during_tests(message)
            return
        if self._phase in ("queued", "starting") and not isinstance(message, SignalMessage):
            self._hold(message)
            return
        if self._phase == "starting":
            await self._launched.wait()
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
            if claims.user_id != self.user_id or not await self._db.user_exists(self.user_id):
                raise TokenError("the token's user does not exist any more")
        except TokenError as exc:
            if exc.code != "token_expired":
                audit("socket_token_refused", user=self.user_id, reason=str(exc))
            await self.send(ErrorMessage(code="unauthorized", message=f"{exc}; nothing was run"))
            with contextlib.suppress(Exception):
                await self.websocket.close(POLICY_VIOLATION, reason=str(exc)[:120])
            return False
        return True

    def _choose(self, language_id: str, preload: bool) -> None:
        """Note the session's language, and whether its program wants a preloading
        sandbox; an unknown language raises ``UnknownLanguage``."""
        language = get_language(language_id).id
        if (language, preload) != (self.language, self.preload):
            self.language, self.preload = language, preload
            self._on_language()

    # Running --------------------------------------------------------------------------------

    def _start(self, message: RunMessage) -> None:
        if self._relay is not None and not self._relay.done():
            raise ProtocolError("run_active", "a run is active: wait for its exit frame")
        spec = RunSpec(
            language=message.language,
            code=message.code,
            stdin=message.stdin,
            timeout=message.timeout,
            project_id=message.project_id,
            save_history=message.save_history,
            files=tuple(SourceFile(f.name, f.content) for f in message.files or ()),
        )
        language = get_language(spec.language)
        self._choose(language.id, wants_preload(language, spec.code, spec.files))
        self.execution = None
        if message.tests is not None:
            self._phase = "testing"
            self._relay = asyncio.create_task(self._run_tests(spec, message.tests))
            return
        # The run waits for its slot in a task of its own: meanwhile this socket's frames
        # are still read, so a Stop or a disconnect takes it out of the queue.
        self._phase = "queued"
        self._launched.clear()
        self._relay = asyncio.create_task(self._run(spec))

    async def _run(self, spec: RunSpec) -> None:
        """Wait for a slot, start the run, relay it; a refusal is the run's ``error`` frame."""
        try:
            admission = await self.runs.admit(self.user_id, spec, self._tell_position)
            self._phase = "starting"
            self.execution = await self.runs.launch(admission)
        except SandboxError as exc:
            await self.send(ErrorMessage(code=exc.code, message=exc.message))
            return
        except Exception:
            log.exception("a run of user %s failed to start", self.user_id)
            await self.send(
                ErrorMessage(code="internal_error", message="the server failed; it is logged")
            )
            return
        finally:
            if self.execution is None:
                self._phase, self._held, self._held_bytes = "idle", [], 0
                self._launched.set()
        channel = self._channel = self._live.open(self.execution, self)
        try:
            await self._give_held(self.execution)
        finally:
            self._phase = "running"
            self._launched.set()
        # The client left while the run was starting: it waits for an attach, or ends.
        if self._leaving and not self._live.detach(channel, self):
            await self.execution.run.kill()
        try:
            await self._relay_run(self.execution, channel)
        finally:
            self._phase = "idle"
            self._live.ended(channel)

    async def _run_tests(self, spec: RunSpec, tests: list[TestCaseModel]) -> None:
        """Run the program once per test; a ``test`` frame each, in order, then ``exit``."""
        cases = [TestCase(**test.model_dump()) for test in tests]
        start = time.monotonic()
        results: list[TestResult] = []
        concurrency = self.runs.test_concurrency
        try:
            async for result in run_tests(self.runs, self.user_id, spec, cases, concurrency):
                results.append(result)
                await self.send(TestMessage(**dataclasses.asdict(result)))
        except SandboxError as exc:
            await self.send(ErrorMessage(code=exc.code, message=exc.message))
            return
        finally:
            self._phase = "idle"
        took = elapsed_since(start)
        execution_id = await store(self.runs, self.user_id, spec, results, took)
        passed = sum(r.passed for r in results)
        await self.send(
            ExitMessage(
                run_id=uuid.uuid4().hex,
                status=Status.SUCCESS if passed == len(results) else Status.ERROR,
                exit_code=None,
                signal=None,
                execution_time=took,
                output_truncated=any(r.status is Status.OUTPUT_LIMIT for r in results),
                execution_id=execution_id,
                tests_passed=passed,
                tests_total=len(results),
            )
        )

    async def _during_tests(self, message: BaseModel) -> None:
        """Test runs take no input (each test has its own); a Stop ends them all."""
        if not isinstance(message, SignalMessage):
            raise ProtocolError(
                "no_active_run", "a test run takes no input: each test gives its own stdin"
            )
        assert self._relay is not None
        self._relay.cancel()
        await self._settle()
        await self.send(ErrorMessage(code="run_cancelled", message="the tests were stopped"))

    def _hold(self, message: BaseModel) -> None:
        assert isinstance(message, StdinMessage | EofMessage)
        size = len(message.data.encode()) if isinstance(message, StdinMessage) else 0
        window = self.runs.backend.limits.stdin_backlog_bytes
        if self._held_bytes + size > window:
            raise ProtocolError(
                "stdin_backlog",
                f"more than {window} bytes of input before the run started: wait for started",
            )
        self._held.append(message)
        self._held_bytes += size

    async def _give_held(self, execution: Execution) -> None:
        held, self._held, self._held_bytes = self._held, [], 0
        for message in held:
            try:
                if isinstance(message, StdinMessage):
                    await execution.write_stdin(message.data)
                else:
                    await execution.run.close_stdin()
            except SandboxError as exc:  # the run goes on, as it would for a live frame
                await self.send(ErrorMessage(code=exc.code, message=exc.message))

    async def _tell_position(self, position: int) -> None:
        await self.send(Queued(position=position))

    async def _leave_queue(self) -> None:
        """A Stop while the run waits for its turn: it leaves the queue, and never runs."""
        assert self._relay is not None
        self._relay.cancel()
        await self._settle()
        await self.send(
            ErrorMessage(
                code="run_cancelled", message="the run was stopped before its turn: nothing ran"
            )
        )

    async def _relay_run(self, execution: Execution, channel: Channel) -> None:
        """Send one run's frames: started, output as it comes, limit, and exit exactly once.

        They go through the run's channel, to whichever socket holds the run by then.
        """
        run = execution.run
        await channel.send(
            Started(
                run_id=run.id,
                language=run.language.id,
                version=run.version,
                stdin_window=run.stdin_window,
                execution_id=execution.record_id,  # None while its row is still being written
            ),
            keep=False,
        )
        acks = asyncio.create_task(self._acknowledge(execution, channel))
        try:
            async for item in execution.output():
                if isinstance(item, Stage):
                    await channel.send(StageMessage(stage=item.stage))
                    continue
                if isinstance(item, Image):
                    await channel.send(self._image_frame(item))
                    continue
                stream, text = item
                await channel.send(OutputMessage(stream=stream, data=text))
            result, execution_id = await self.runs.finish(execution)
        finally:
            acks.cancel()
        if result.status is Status.OUTPUT_LIMIT:
            await channel.send(
                LimitMessage(
                    limit="output",
                    message=f"output passed {self.runs.backend.limits.output_bytes} bytes: "
                    "the rest was cut and the program stopped",
                )
            )
        await channel.send(
            ExitMessage(
                run_id=run.id,
                status=result.status,
                exit_code=result.exit_code,
                signal=result.signal,
                execution_time=result.execution_time,
                output_truncated=result.output_truncated,
                execution_id=execution_id,
                compile_time=result.compile_time,
                cpu_time=result.cpu_time,
                memory_peak=result.memory_peak,
            )
        )

    def _image_frame(self, image: Image) -> ImageMessage | LimitMessage:
        if image.data is not None:
            return ImageMessage(mime="image/png", data=base64.b64encode(image.data).decode())
        limits = self.runs.backend.limits
        return LimitMessage(
            limit="image",
            message=f"plots are limited to {limits.images} per run of at most "
            f"{limits.image_bytes} bytes each: the rest were not sent",
        )

    async def _acknowledge(self, execution: Execution, channel: Channel) -> None:
        """Tell the client how much of its input the program took: its window moves on.

        Acknowledgements coalesce: each one carries the running total when it is sent.
        """
        taken = 0
        while True:
            taken = await execution.run.stdin_taken(taken)
            await channel.send(StdinAck(bytes=taken), keep=False)

    async def _abandon(self) -> None:
        """The socket is gone: a queued run leaves the queue; a live one is detached (it
        waits for its owner to attach, server/reattach.py) or, without a grace, killed and
        waited for until it is stored."""
        if self._relay is None:
            return
        self._leaving = True
        if self._phase in ("queued", "testing"):
            self._relay.cancel()
        elif self._phase == "starting" and self._live.grace > 0:
            return  # once started, the run detaches itself (see _run)
        elif self._channel is not None and self._live.detach(self._channel, self):
            return
        elif self.execution is not None:
            await self.execution.run.kill()
        await self._settle()

    # Reattach -------------------------------------------------------------------------------

    async def _attach(self, run_id: str) -> None:
        """Take over a live run of this user's: ``attached``, its replay, then live frames."""
        if self._relay is not None and not self._relay.done():
            raise ProtocolError("run_active", "this socket has a run: wait for its exit frame")
        channel = self._live.find(run_id, self.user_id)
        if channel is None:
            raise ProtocolError("run_not_found", f"no live run {run_id!r} of yours on this server")
        self._channel, self.execution, self._relay = channel, channel.execution, channel.task
        self._phase = "running"
        self._launched.set()
        await channel.attach(self)
        if channel.ended:  # it ended while detached: the replay held its exit
            self._live.ended(channel)

    async def displace(self) -> None:
        """Another socket attached to this one's run: it is that socket's now."""
        self._channel, self.execution, self._relay = None, None, None
        self._phase = "idle"
        await self.send(
            ErrorMessage(
                code="run_attached_elsewhere",
                message="the run was attached from another socket (a reload or another tab)",
            )
        )
        with contextlib.suppress(Exception):
            await self.websocket.close(TAKEN_OVER, reason="the run was attached elsewhere")

    async def _settle(self) -> None:
        """Wait until the run's task is over, however it ended."""
        assert self._relay is not None
        await asyncio.wait({self._relay})
        if not self._relay.cancelled() and (exc := self._relay.exception()) is not None:
            log.error("the run of user %s failed", self.user_id, exc_info=exc)

    async def shutdown(self) -> None:
        """Server shutdown, once the run service has stopped every run: let this session's
        exit frame out, then say goodbye."""
        if self._relay is not None:
            await self._settle()
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
