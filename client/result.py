"""What a run sends back: its events, and the result they add up to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from client.errors import InvalidFrame
from sandbox import Status
from server.protocol import (
    Attached,
    ExitMessage,
    ImageMessage,
    LimitMessage,
    OutputMessage,
    Queued,
    StageMessage,
    Started,
    TestMessage,
)

Event = (
    Queued
    | Started
    | Attached
    | StageMessage
    | OutputMessage
    | ImageMessage
    | TestMessage
    | LimitMessage
    | ExitMessage
)
"""A frame of a run, as ``ExecClient.stream`` yields it: ``Queued`` while it waits for its
turn (its position, whenever it moves), then ``Started``; the last one is the ``ExitMessage``."""

_E = TypeVar("_E", bound=Event)


@dataclass(frozen=True)
class RunResult:
    """A finished run: all of its output, and how it ended."""

    stdout: str
    stderr: str
    exit: ExitMessage
    started: Started | None
    """``None`` only if the program never started (the server then reports an internal error)."""
    limit: LimitMessage | None
    events: tuple[Event, ...]
    compile_output: str = ""
    """The compiler's messages (a compiled language's compile stage), apart from stderr."""

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> RunResult:
        events = tuple(events)
        exit = _first(events, ExitMessage)
        if exit is None:
            raise InvalidFrame("the run's events end without its exit frame")
        return cls(
            stdout=_joined(events, "stdout"),
            stderr=_joined(events, "stderr"),
            compile_output=_joined(events, "stderr", "compile"),
            exit=exit,
            started=_first(events, Started),
            limit=_first(events, LimitMessage),
            events=events,
        )

    @property
    def run_id(self) -> str:
        return self.exit.run_id

    @property
    def status(self) -> Status:
        return self.exit.status

    @property
    def exit_code(self) -> int | None:
        return self.exit.exit_code

    @property
    def signal(self) -> str | None:
        return self.exit.signal

    @property
    def execution_time(self) -> float:
        return self.exit.execution_time

    @property
    def output_truncated(self) -> bool:
        return self.exit.output_truncated

    @property
    def execution_id(self) -> int | None:
        return self.exit.execution_id


def _first(events: Sequence[Event], kind: type[_E]) -> _E | None:
    return next((event for event in events if isinstance(event, kind)), None)


def _joined(events: Sequence[Event], stream: str, stage: str = "run") -> str:
    """One stream's output in one stage (a language without stages has only ``run``)."""
    parts, current = [], "run"
    for event in events:
        if isinstance(event, StageMessage):
            current = event.stage
        elif isinstance(event, OutputMessage) and event.stream == stream and current == stage:
            parts.append(event.data)
    return "".join(parts)
