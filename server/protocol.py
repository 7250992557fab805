"""The WebSocket protocol's messages, as typed models. ``docs/protocol.md`` describes the same."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from sandbox import Status

SignalName = Literal["SIGINT", "SIGTERM", "SIGKILL"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Client to server ------------------------------------------------------------------------


class RunMessage(_Message):
    type: Literal["run"]
    language: str
    code: str
    stdin: str | None = None
    """Given up front: the whole input, followed by end-of-file. Omit it to type into stdin."""
    timeout: float | None = Field(default=None, gt=0)
    project_id: int | None = None
    save_history: bool = True


class StdinMessage(_Message):
    type: Literal["stdin"]
    data: str

    @field_validator("data")
    @classmethod
    def _utf8(cls, data: str) -> str:
        # JSON can spell half a surrogate pair; UTF-8 cannot, and the program gets UTF-8.
        try:
            data.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text: it holds half a surrogate pair") from None
        return data


class EofMessage(_Message):
    type: Literal["eof"]


class SignalMessage(_Message):
    type: Literal["signal"]
    signal: SignalName


class PrepareMessage(_Message):
    """The editor has ``language`` chosen: the server keeps a warm sandbox ready for it."""

    type: Literal["prepare"]
    language: str


ClientMessage = Annotated[
    RunMessage | StdinMessage | EofMessage | SignalMessage | PrepareMessage,
    Field(discriminator="type"),
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("run", "stdin", "eof", "signal", "prepare")


# Server to client ------------------------------------------------------------------------


class Queued(_Message):
    """Every run slot is taken: the run waits its turn; sent again whenever its place moves."""

    type: Literal["queued"] = "queued"
    position: int
    """1 for the next run to start."""


class Started(_Message):
    type: Literal["started"] = "started"
    run_id: str
    language: str
    version: str
    stdin_window: int
    """Bytes of ``stdin`` data a client may have in flight (sent, not yet acknowledged)."""
    execution_id: int | None = None
    """The stored record's id, known from the start (None when the run is not kept)."""


class StdinAck(_Message):
    """The program has taken ``bytes`` bytes (a running total) of this run's ``stdin`` data."""

    type: Literal["stdin_ack"] = "stdin_ack"
    bytes: int


class OutputMessage(_Message):
    type: Literal["output"] = "output"
    stream: Literal["stdout", "stderr"]
    data: str


class LimitMessage(_Message):
    type: Literal["limit"] = "limit"
    limit: Literal["output"]
    message: str


class ExitMessage(_Message):
    type: Literal["exit"] = "exit"
    run_id: str
    status: Status
    exit_code: int | None
    signal: str | None
    execution_time: float
    output_truncated: bool
    execution_id: int | None = None


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str


ServerMessage = Annotated[
    Queued | Started | StdinAck | OutputMessage | LimitMessage | ExitMessage | ErrorMessage,
    Field(discriminator="type"),
]
SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
