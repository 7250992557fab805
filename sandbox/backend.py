"""What every backend shares: checking a request, handing the program to a launcher."""

from __future__ import annotations

import abc
import json
from typing import Any

from sandbox.errors import CodeTooLarge, InvalidTimeout
from sandbox.languages import Language, get_language
from sandbox.run import Limits, Process, Run, RunRequest


def header(language: Language, code: str, folder: str, launchers: str) -> bytes:
    """The launcher's header: a line with the byte count, then the JSON itself."""

    def fill(argv: tuple[str, ...] | None) -> list[str] | None:
        if argv is None:
            return None
        return [arg.format(dir=folder, launchers=launchers) for arg in argv]

    body = json.dumps(
        {
            "file": language.file(folder),
            "code": code,
            "compile": fill(language.compile),
            "run": fill(language.run),
        }
    ).encode()
    return b"%d\n%s" % (len(body), body)


class Backend(abc.ABC):
    """Starts runs. Subclasses say how a sandboxed process is made ready."""

    name: str

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.versions: dict[str, str] = {}

    async def start(self, request: RunRequest) -> Run:
        """Check the request, then start its program; raises a ``SandboxError`` when refused."""
        language = get_language(request.language)
        size = len(request.code.encode("utf-8", "surrogatepass"))
        if size > self.limits.code_bytes:
            raise CodeTooLarge(size, self.limits.code_bytes)
        wall_time = self._wall_time(request.timeout)
        process, warm = await self.acquire(language)
        try:
            await process.begin(self.header(language, request.code, process))
        except BaseException:
            await process.remove()
            raise
        return Run(
            process,
            language,
            version=self.versions.get(language.id, language.version),
            wall_time=wall_time,
            output_bytes=self.limits.output_bytes,
            stdin=request.stdin,
            warm=warm,
        )

    def _wall_time(self, timeout: float | None) -> float:
        limit = self.limits.wall_time
        if timeout is None:
            return limit
        if not 0 < timeout <= limit:
            raise InvalidTimeout(timeout, limit)
        return timeout

    async def acquire(self, language: Language) -> tuple[Process, bool]:
        """A process waiting for its program, and whether it was ready before we asked."""
        return await self.prepare(language), False

    @abc.abstractmethod
    def header(self, language: Language, code: str, process: Process) -> bytes: ...

    @abc.abstractmethod
    async def prepare(self, language: Language) -> Process:
        """Create and start a sandbox whose launcher waits for a program."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and check what the backend needs; raises ``BackendUnavailable``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything the backend holds."""

    async def health(self) -> dict[str, Any]:
        return {"backend": self.name, "ok": True}
