"""The WebSocket protocol's messages, as typed models. ``docs/protocol.md`` describes the same."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from sandbox import Status

SignalName = Literal["SIGINT", "SIGTERM", "SIGKILL"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Client to server ------------------------------------------------------------------------


class FileModel(_Message):
    """One more file of a program, written beside its entry file (``code``)."""

    name: str = Field(max_length=1000)
    content: str


class TestCaseModel(_Message):
    """One test case of a ``run``: the program gets ``stdin``, its stdout is compared."""

    name: str = Field(min_length=1, max_length=100)
    stdin: str = ""
    expected_stdout: str
    compare: Literal["exact", "trim", "tokens", "float"] = "trim"
    tolerance: float = Field(default=1e-6, ge=0, le=1e9, allow_inf_nan=False)


MAX_TESTS = 20


class RunMessage(_Message):
    type: Literal["run"]
    language: str
    code: str
    """The entry file."""
    files: list[FileModel] | None = Field(default=None, max_length=1000)
    """The program's other files; sandbox/files.py says which names and sizes are allowed."""
    stdin: str | None = None
    """Given up front: the whole input, followed by end-of-file. Omit it to type into stdin."""
    timeout: float | None = Field(default=None, gt=0)
    project_id: int | None = None
    save_history: bool = True
    tests: list[TestCaseModel] | None = Field(default=None, min_length=1, max_length=MAX_TESTS)
    """Run the program once per test case instead (``stdin`` is then each test's own)."""


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
    """The editor has ``language`` chosen: the server keeps a warm sandbox ready for it;
    with ``preload``, one that imported ahead what the program imports (the languages
    endpoint's ``preload_for`` matches it: a plot)."""

    type: Literal["prepare"]
    language: str
    preload: bool = False


class AttachMessage(_Message):
    """Resume a run of this user's whose socket was lost (or that another socket holds)."""

    type: Literal["attach"]
    run_id: str = Field(min_length=1, max_length=64)


ClientMessage = Annotated[
    RunMessage | StdinMessage | EofMessage | SignalMessage | PrepareMessage | AttachMessage,
    Field(discriminator="type"),
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("run", "stdin", "eof", "signal", "prepare", "attach")


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
    """The stored record's id when it is already written, as it usually is; None when the run
    is not kept, or when the server is busy and the run did not wait for its record (``exit``
    always carries it)."""


class Attached(_Message):
    """The answer to ``attach``: this socket now holds the run. The frames the run sent so
    far follow (its replay), then its live frames, as after ``started``."""

    type: Literal["attached"] = "attached"
    run_id: str
    language: str
    version: str
    stdin_window: int
    stdin_sent: int
    """Bytes of ``stdin`` data the server accepted for this run so far, from any socket."""
    stdin_acked: int
    """Bytes of it the program has taken: ``stdin_sent - stdin_acked`` are in flight."""
    execution_id: int | None = None
    replay_truncated: bool = False
    """The oldest frames did not fit in the replay buffer and are left out."""


class StdinAck(_Message):
    """The program has taken ``bytes`` bytes (a running total) of this run's ``stdin`` data."""

    type: Literal["stdin_ack"] = "stdin_ack"
    bytes: int


class OutputMessage(_Message):
    type: Literal["output"] = "output"
    stream: Literal["stdout", "stderr"]
    data: str


class StageMessage(_Message):
    """A compiled language's run moved on: ``compile`` starts, then ``run`` once it built.
    Output between ``compile`` and ``run`` is the compiler's."""

    type: Literal["stage"] = "stage"
    stage: Literal["compile", "run"]


class LimitMessage(_Message):
    type: Literal["limit"] = "limit"
    limit: Literal["output", "image"]
    message: str


class ImageMessage(_Message):
    """A plot the program showed (``plt.show()`` or ``savefig``), base64-encoded."""

    type: Literal["image"] = "image"
    mime: Literal["image/png"] = "image/png"
    data: str


class ExitMessage(_Message):
    type: Literal["exit"] = "exit"
    run_id: str
    status: Status
    exit_code: int | None
    signal: str | None
    execution_time: float
    """Seconds of the run stage only."""
    output_truncated: bool
    execution_id: int | None = None
    compile_time: float | None = None
    """Seconds of the compile stage; None for a language without one."""
    tests_passed: int | None = None
    tests_total: int | None = None
    cpu_time: float | None = None
    memory_peak: int | None = None


class TestMessage(_Message):
    """One test case's result, sent in test order."""

    type: Literal["test"] = "test"
    name: str
    passed: bool
    status: Status
    time: float
    stdout: str
    expected: str
    diff: str | None


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str


ServerMessage = Annotated[
    Queued
    | Started
    | Attached
    | StdinAck
    | OutputMessage
    | StageMessage
    | ImageMessage
    | TestMessage
    | LimitMessage
    | ExitMessage
    | ErrorMessage,
    Field(discriminator="type"),
]
SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
