"""The replay buffer of a run's channel: frames as sent, bounded, output joined."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel

from server.protocol import Attached, ExitMessage, LimitMessage, OutputMessage, StdinAck
from server.reattach import Channel


class Socket:
    def __init__(self) -> None:
        self.frames: list[BaseModel] = []
        self.displaced = False

    async def send(self, message: BaseModel) -> None:
        self.frames.append(message)

    async def displace(self) -> None:
        self.displaced = True


def execution() -> Any:
    run = SimpleNamespace(
        id="r1",
        language=SimpleNamespace(id="python"),
        version="3.11",
        stdin_window=100,
        stdin_counts=(7, 5),
    )
    return SimpleNamespace(run=run, user_id=1, record_id=9)


def exit_frame() -> ExitMessage:
    return ExitMessage(
        run_id="r1",
        status="killed",  # type: ignore[arg-type]
        exit_code=None,
        signal="SIGKILL",
        execution_time=1.0,
        output_truncated=True,
    )


async def test_attach_gets_the_state_then_the_frames_as_sent_and_the_old_socket_is_displaced():
    first, second = Socket(), Socket()
    channel = Channel(execution(), first, replay_bytes=10_000)
    await channel.send(OutputMessage(stream="stdout", data="a"))
    await channel.send(OutputMessage(stream="stdout", data="b"))
    await channel.send(OutputMessage(stream="stderr", data="c"))
    await channel.send(StdinAck(bytes=5), keep=False)
    await channel.send(LimitMessage(limit="output", message="cut"))
    await channel.send(exit_frame())
    await channel.attach(second)
    attached, *replay = second.frames
    assert isinstance(attached, Attached)
    assert (attached.stdin_sent, attached.stdin_acked, attached.execution_id) == (7, 5, 9)
    assert not attached.replay_truncated
    assert replay == [
        OutputMessage(stream="stdout", data="ab"),
        OutputMessage(stream="stderr", data="c"),
        LimitMessage(limit="output", message="cut"),
        exit_frame(),
    ]
    assert first.displaced and len(first.frames) == 6


async def test_the_replay_keeps_the_newest_frames_within_its_bound():
    channel = Channel(execution(), None, replay_bytes=200)
    for n in range(20):
        stream = "stdout" if n % 2 else "stderr"
        await channel.send(OutputMessage(stream=stream, data=f"{n:02}"))
    await channel.attach(socket := Socket())
    attached, *replay = socket.frames
    assert isinstance(attached, Attached) and attached.replay_truncated
    kept = "".join(f.data for f in replay if isinstance(f, OutputMessage))
    assert kept.endswith("171819") and not kept.startswith("00")
    assert sum(len(f.model_dump_json()) for f in replay) <= 200
