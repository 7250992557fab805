"""The side channel: frames inside a container's stderr that are not the program's text.

Only stdout and stderr leave a container, so plots (from our matplotlib backend) and usage
figures (from init, once the program has ended) travel on stderr, each as one frame:

    MARK KEY ":" KIND ":" LENGTH "\\n" PAYLOAD

``KEY`` is a random hex string the server chose; a kind is accepted only with its own key.
Images use a key handed to the launcher (a program may read it from its own memory, and then
make only the images ``plt.show()`` would make anyway); usage figures use a key only the
container's init knows. Frames are taken out of stderr before the output cap counts it;
anything else, including text that merely looks like a frame, stays the program's stderr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARK = b"\x1eexecstream:"
_HEADER = re.compile(rb"([0-9a-f]{16,64}):([a-z]{1,16}):([0-9]{1,12})\n")
_HEADER_MAX = 16 + 64 + 16 + 12 + 3  # the longest header a frame may have, after MARK


@dataclass(frozen=True)
class Frame:
    kind: str
    payload: bytes | None
    """None when the frame was larger than the parser keeps (its bytes were skipped)."""
    size: int


class SideChannel:
    """Splits a stream of stderr bytes into the program's text and our frames.

    ``keys`` maps each key to the kind of frame it may carry. Memory is bounded: a frame's
    payload is kept up to ``max_payload`` bytes, a larger one is skipped as it streams by.
    """

    def __init__(self, keys: dict[bytes, str], max_payload: int) -> None:
        self._keys = keys
        self._max_payload = max_payload
        self._buffer = b""
        self._frame: tuple[str, int, int] | None = None  # kind, bytes still to come, size
        self._payload: list[bytes] = []
        self._skipping = False

    def feed(self, data: bytes) -> tuple[bytes, list[Frame]]:
        """The program's text in ``data`` (held back while it may begin a frame) and the
        frames it completed."""
        self._buffer += data
        text: list[bytes] = []
        frames: list[Frame] = []
        while self._buffer:
            if self._frame is not None:
                if (frame := self._take_payload()) is None:
                    break
                frames.append(frame)
                continue
            start = self._buffer.find(MARK)
            if start < 0:
                keep = _partial_mark(self._buffer)
                text.append(self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            text.append(self._buffer[:start])
            self._buffer = self._buffer[start:]
            header = self._buffer[len(MARK) : len(MARK) + _HEADER_MAX]
            match = _HEADER.match(header)
            if match is None:
                if b"\n" in header or len(header) >= _HEADER_MAX:
                    # Not one of ours: the mark is the program's own text.
                    text.append(self._buffer[:1])
                    self._buffer = self._buffer[1:]
                    continue
                break  # the header may still be arriving
            key, kind, length = match.group(1), match.group(2).decode(), int(match.group(3))
            if self._keys.get(key) != kind:
                text.append(self._buffer[:1])
                self._buffer = self._buffer[1:]
                continue
            self._buffer = self._buffer[len(MARK) + match.end() :]
            if not length:  # nothing to wait for (init's end frame)
                frames.append(Frame(kind, b"", 0))
                continue
            self._frame = (kind, length, length)
            self._skipping = length > self._max_payload
        return b"".join(text), frames

    def flush(self) -> bytes:
        """At the end of the stream: whatever was held back is the program's text (a frame
        cut short is dropped: it was ours, not the program's)."""
        rest, self._buffer = self._buffer, b""
        return b"" if self._frame is not None else rest

    def _take_payload(self) -> Frame | None:
        assert self._frame is not None
        kind, left, size = self._frame
        piece, self._buffer = self._buffer[:left], self._buffer[left:]
        if not self._skipping:
            self._payload.append(piece)
        left -= len(piece)
        if left:
            self._frame = (kind, left, size)
            return None
        self._frame = None
        payload = None if self._skipping else b"".join(self._payload)
        self._payload = []
        return Frame(kind, payload, size)


def _partial_mark(data: bytes) -> int:
    """How many bytes at the end of ``data`` could be the start of a mark."""
    for size in range(min(len(MARK) - 1, len(data)), 0, -1):
        if MARK.startswith(data[-size:]):
            return size
    return 0
