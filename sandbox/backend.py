"""What every backend shares: checking a request, handing the program to a launcher."""

from __future__ import annotations

import abc
import dataclasses
import functools
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sandbox.errors import BackendUnavailable, InvalidTimeout
from sandbox.files import SourceFile, check_program
from sandbox.languages import (
    OUT,
    Language,
    compiler,
    get_language,
    is_compiler,
    main_class,
    preloading,
    sandboxes,
    wants_preload,
)
from sandbox.model import CompileStage, Limits, Process, RunRequest
from sandbox.pool import Pool, PoolView
from sandbox.run import Run
from sandbox.sidechannel import SideChannel

log = logging.getLogger(__name__)


def header(
    language: Language,
    code: str,
    wall_time: float,
    folder: str,
    launchers: str,
    files: Sequence[SourceFile] = (),
    artifact: bytes = b"",
    key: str = "",
) -> bytes:
    """The launcher's header: a line with the byte count, then the JSON itself, then the
    ``artifact`` of a compile stage, if any (the launcher reads that many bytes).

    ``wall_time`` arms the watchdog inside the sandbox, if it has one (the Docker image's
    init), so the program ends even when nobody is left to stop it. ``key`` marks the run's
    side-channel frames (plots, sandbox/sidechannel.py).
    """
    fill = filler(language, code, folder, launchers, files)
    body = {
        "file": language.file(folder, code),
        "code": code,
        "files": [{"name": f.name, "content": f.content} for f in files],
        "compile": fill(language.compile),
        "run": fill(language.run),
        "wall_time": wall_time,
        "key": key,
        "artifact": len(artifact),
    }
    return _frame(body) + artifact


def compile_header(
    language: Language,
    code: str,
    wall_time: float,
    folder: str,
    launchers: str,
    files: Sequence[SourceFile] = (),
) -> bytes:
    """The compile launcher's header (sandbox/image/launch_compile.py)."""
    fill = filler(language, code, folder, launchers, files)
    body = {
        "file": language.file(folder, code),
        "code": code,
        "files": [{"name": f.name, "content": f.content} for f in files],
        "compile": fill(language.compile_stage),
        "out": OUT.format(dir=folder),
        "wall_time": wall_time,
    }
    return _frame(body)


def _frame(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return b"%d\n%s" % (len(data), data)


def filler(
    language: Language, code: str, folder: str, launchers: str, files: Sequence[SourceFile]
) -> Callable[[tuple[str, ...] | None], list[str] | None]:
    """Fills a command's placeholders (see sandbox/languages.py)."""
    names = {"dir": folder, "launchers": launchers, "class": main_class(code)}
    entry = language.entry_name(code)
    sources = [entry, *(f.name for f in files if f.name.endswith(language.extension))]

    def fill(argv: tuple[str, ...] | None) -> list[str] | None:
        if argv is None:
            return None
        filled: list[str] = []
        for arg in argv:
            filled.extend(sources if arg == "{sources}" else [arg.format(**names)])
        return filled

    return fill


def default_compile_limits(limits: Limits) -> Limits:
    """The compile stage's limits when none are configured: 15 s, 512 MB, 10 KB of messages,
    two CPUs, room for a compiler's threads and files."""
    return dataclasses.replace(
        limits,
        wall_time=15.0,
        memory_bytes=512 * 2**20,
        cpus=2.0,
        pids=max(limits.pids, 256),
        output_bytes=10 * 1024,
        tmp_bytes=256 * 2**20,
        file_bytes=256 * 2**20,
    )


def _side_channel(image_key: str, max_payload: int, process: Process) -> SideChannel:
    """The side channel of one sandbox: the run's key for plots, the sandbox's init's for
    usage figures."""
    keys = {image_key.encode(): "image"}
    if report_key := getattr(process, "report_key", ""):
        keys[report_key.encode()] = "usage"
    return SideChannel(keys, max_payload)


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
        compile_limits: Limits | None = None,
        preload: bool = False,
    ) -> None:
        """``pool_size`` is the pool's minimum per launcher; ``pool_max`` its maximum (by
        default the minimum: a fixed pool), 0 for no pool at all. With ``preload`` the
        programs that import a language's slow libraries (``preload_for``) get warm
        containers of their own, which imported them ahead."""
        self.limits = limits
        self.preload = preload
        self.compile_limits = compile_limits or default_compile_limits(limits)
        self.versions: dict[str, str] = {}
        self.warm = Pool(
            self._prepare_warm,
            pool_size,
            pool_max,
            pool_lifetime,
            pool_memory_bytes,
            self.idle_bytes,
            pool_shrink_seconds,
            sandboxes(preload),
        )
        """This backend's own warm processes."""
        self.pool: PoolView = self.warm
        """What the server steers and reports: demand, reservations, stats (several engines
        each have a pool of their own: sandbox/engines.py)."""

    async def start(self, request: RunRequest) -> Run:
        """Check the request, then start its program; raises a ``SandboxError`` when refused.

        A language with a compile stage starts in a compile container; its run container is
        taken once the build succeeded (see ``Run``)."""
        language = get_language(request.language)
        code, files = request.code, request.files
        check_program(language.entry_name(code), code, files, self.limits.code_bytes)
        wall_time = self._wall_time(language, request.timeout)
        limits = self.limits_for(language)
        version = self.versions.get(language.id, language.version)
        key = secrets.token_hex(16)
        if language.compile_stage is None:
            process, warm = await self._ready(
                language,
                lambda p: self.header(language, code, wall_time, p, files, key=key),
                preloaded=self.preload and wants_preload(language, code, files),
            )
            stage = None
        else:
            compile_limits = self.limits_for(compiler(language))
            process, warm = await self._ready(
                compiler(language),
                lambda p: self.compile_header(language, code, compile_limits.wall_time, p, files),
            )
            stage = CompileStage(
                wall_time=compile_limits.wall_time,
                output_bytes=compile_limits.output_bytes,
                artifact_bytes=limits.tmp_bytes,
                memory_bytes=compile_limits.memory_bytes,
                start_run=functools.partial(self._start_run, language, request, wall_time, key),
            )
        return Run(
            process,
            language,
            version=version,
            wall_time=wall_time,
            output_bytes=limits.output_bytes,
            stdin_backlog_bytes=limits.stdin_backlog_bytes,
            stdin=request.stdin,
            warm=warm,
            compile_stage=stage,
            side_channel=functools.partial(_side_channel, key, limits.image_bytes),
            images=limits.images,
            cpus=limits.cpus,
        )

    async def _start_run(
        self, language: Language, request: RunRequest, wall_time: float, key: str, artifact: bytes
    ) -> Process:
        """The run stage of a compiled program: a run container given what the build made,
        and the run's plot key."""
        code, files = request.code, request.files
        process, _ = await self._ready(
            language, lambda p: self.header(language, code, wall_time, p, files, artifact, key)
        )
        return process

    async def _ready(
        self, language: Language, make_header: Callable[[Process], bytes], preloaded: bool = False
    ) -> tuple[Process, bool]:
        """A process of ``language`` that took its header, and whether it was warm; one that
        ``preloaded`` when asked and there is one, else a plain warm one, else a cold one."""
        for kind in (preloading(language), language) if preloaded else (language,):
            process = self.warm.take(kind)
            if process is not None and await self._begin(process, language, make_header):
                return process, True
        # Cold: no warm process was ready, or the one we took had died meanwhile.
        process = await self.prepare(language)
        if not await self._begin(process, language, make_header):
            raise BackendUnavailable("the sandbox did not take the program")
        return process, False

    async def _begin(
        self, process: Process, language: Language, make_header: Callable[[Process], bytes]
    ) -> bool:
        """Hand the program over; False (and the process removed) when that failed."""
        try:
            await process.begin(make_header(process))
        except Exception as exc:
            log.warning("a %s sandbox refused its program: %s", language.id, exc)
            await process.remove()
            return False
        except BaseException:
            await process.remove()
            raise
        return True

    def limits_for(self, language: Language) -> Limits:
        """The limits of a container of ``language``: the compile limits for a compile
        container, the run limits otherwise, with the language's overrides on top."""
        base = self.compile_limits if is_compiler(language) else self.limits
        return language.run_limits.apply(base)

    def _wall_time(self, language: Language, timeout: float | None) -> float:
        limit = self.limits_for(language).wall_time
        if timeout is None:
            return limit
        if not 0 < timeout <= limit:
            raise InvalidTimeout(timeout, limit)
        return timeout

    @abc.abstractmethod
    def header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
        artifact: bytes = b"",
        key: str = "",
    ) -> bytes: ...

    @abc.abstractmethod
    def compile_header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
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

    def finishing(self) -> int:
        """Sandboxes whose program has ended, waiting to be removed (at the backend's pace)."""
        return 0

    async def owners(self) -> Counter[str]:
        """How many sandboxes each owner (a server instance id) has; none by default."""
        return Counter()

    async def remove_owned_by(self, owners: Iterable[str]) -> int:
        """Remove every sandbox of the given owners; how many were removed."""
        return 0
