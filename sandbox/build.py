"""A compile stage's output: the compiler's messages within their cap, then the build."""

from __future__ import annotations

from sandbox.utf8 import boundary


class Build:
    """What a compile stage sends: messages within their cap, and the artifact within its."""

    def __init__(self, message_bytes: int, artifact_bytes: int) -> None:
        self.message_bytes = message_bytes
        self._budget = message_bytes
        self._artifact_bytes = artifact_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._head = b""
        self._announced: tuple[int, int] | None = None
        """The launcher's line before the tar: its size, and the messages sent before it."""
        self.said = 0
        """Bytes of messages received, shown or not."""
        self.truncated = False
        self.told = False
        self.overflow = False

    @property
    def complete(self) -> bool:
        """The whole artifact and every message arrived (so the compile succeeded)."""
        if self._announced is None or self.overflow:
            return False
        size, said = self._announced
        return self._size == size and self.said >= said

    def message(self, data: bytes) -> bytes:
        """The part of ``data`` that fits the cap (never a cut character)."""
        if self.truncated:
            return b""
        if len(data) <= self._budget:
            self._budget -= len(data)
            return data
        cut = boundary(data, self._budget)
        self._budget = 0
        self.truncated = True
        return data[:cut]

    def keep(self, data: bytes) -> None:
        """Past its bound the artifact is dropped (the compile then fails), still read."""
        if self._announced is None:
            self._head += data
            line, found, data = self._head.partition(b"\n")
            if not found:
                self.overflow = len(self._head) > 64  # not our launcher's line
                return
            try:
                size, said = (int(part) for part in line.split())
            except ValueError:
                size, said = self._artifact_bytes + 1, 0  # garbage: refused below
            self._announced = (size, said)
            self.overflow = size > self._artifact_bytes
        self._size += len(data)
        if self._size > self._artifact_bytes:
            self.overflow = True
            self._parts.clear()
        elif not self.overflow:
            self._parts.append(data)

    def artifact(self) -> bytes:
        return b"".join(self._parts)
