"""What every backend shares: checking a request, handing the program to a launcher."""

from __future__ import annotations

import abc
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sandbox.errors import BackendUnavailable, CodeTooLarge, InvalidTimeout
from sandbox.languages import Language, get_language
from sandbox.pool import Pool
from sandbox.run import Limits, Process, Run, RunRequest

log = logging.getLogger(__name__)


def header(language: Language, code: str, wall_time: float, folder: str, launchers: str) -> bytes:
    """The launcher's header: a line with the byte count, then the JSON itself.

    ``wall_time`` arms the watchdog inside the sandbox, if it has one (the Docker image's
    init), so the program ends even when nobody is left to stop it.
    """

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
            "wall_time": wall_time,
        }
    ).encode()
    return b"%d\n%s" % (len(body), body)


class Backend(abc.ABC):
    """Starts runs. Subclasses say how a sandboxed process is made ready."""

    name: str
    runtime: str | None = None
    """What walls programs in (a container runtime), None when nothing does."""

    def __init__(
        self,
        limits: Limits,
        pool_size: int = 0,
        pool_lifetime: float | None = None,
        pool_max: int | None = None,
        pool_memory_bytes: int | None = None,
        pool_shrink_seconds: float = 60.0,
    ) -> None:
        """``pool_size`` is the pool's minimum per launcher; ``pool_max`` its maximum (by
        default the minimum: a fixed pool), 0 for no pool at all."""
        self.limits = limits
        self.versions: dict[str, str] = {}
        self.pool = Pool(
            self._prepare_warm,
            pool_size,
            pool_max,
            pool_lifetime,
            pool_memory_bytes,
            self.idle_bytes,
            pool_shrink_seconds,
        )

    async def start(self, request: RunRequest) -> Run:
        """Check the request, then start its program; raises a ``SandboxError`` when refused."""
        language = get_language(request.language)
        size = len(request.code.encode("utf-8", "surrogatepass"))
        if size > self.limits.code_bytes:
            raise CodeTooLarge(size, self.limits.code_bytes)
        wall_time = self._wall_time(request.timeout)
        process = self.pool.take(language)
        warm = process is not None
        if process is None or not await self._begin(process, language, request.code, wall_time):
            # Cold: no warm process was ready, or the one we took had died meanwhile.
            warm = False
            process = await self.prepare(language)
            if not await self._begin(process, language, request.code, wall_time):
                raise BackendUnavailable("the sandbox did not take the program")
        run = Run(
            process,
            language,
            version=self.versions.get(language.id, language.version),
            wall_time=wall_time,
            output_bytes=self.limits.output_bytes,
            stdin_backlog_bytes=self.limits.stdin_backlog_bytes,
            stdin=request.stdin,
            warm=warm,
        )
        return run

    async def _begin(
        self, process: Process, language: Language, code: str, wall_time: float
    ) -> bool:
        """Hand the program over; False (and the process removed) when that failed."""
        try:
            await process.begin(self.header(language, code, wall_time, process))
        except Exception as exc:
            log.warning("a %s sandbox refused its program: %s", language.id, exc)
            await process.remove()
            return False
        except BaseException:
            await process.remove()
            raise
        return True

    def _wall_time(self, timeout: float | None) -> float:
        limit = self.limits.wall_time
        if timeout is None:
            return limit
        if not 0 < timeout <= limit:
            raise InvalidTimeout(timeout, limit)
        return timeout

    @abc.abstractmethod
    def header(
        self, language: Language, code: str, wall_time: float, process: Process
    ) -> bytes: ...

    @abc.abstractmethod
    async def prepare(self, language: Language, background: bool = False) -> Process:
        """Create and start a sandbox whose launcher waits for a program; ``background``
        when nobody waits for it (the pool filling), so a waiting run goes first."""

    async def _prepare_warm(self, language: Language) -> Process:
        return await self.prepare(language, background=True)

    def idle_bytes(self, language: Language) -> int:
        """Memory one idle warm sandbox of ``language`` holds, for the pool's budget; 0 when
        not known (the pool's memory budget then does not count it)."""
        return 0

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and check what the backend needs; raises ``BackendUnavailable``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything the backend holds."""

    async def health(self) -> dict[str, Any]:
        return {"backend": self.name, "ok": True}

    async def owners(self) -> Counter[str]:
        """How many sandboxes each owner (a server instance id) has; none by default."""
        return Counter()

    async def remove_owned_by(self, owners: Iterable[str]) -> int:
        """Remove every sandbox of the given owners; how many were removed."""
        return 0
