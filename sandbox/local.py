"""The local backend: plain subprocesses, for development without Docker. NOT a sandbox.

It is used only when chosen in configuration, never as a fallback, and says so loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal as signals
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sandbox.backend import Backend, compile_header, header
from sandbox.files import SourceFile
from sandbox.languages import Language
from sandbox.model import Exit, Limits, Output, Process, StreamName

log = logging.getLogger(__name__)

LAUNCHERS = Path(__file__).parent / "image"
_READ_SIZE = 4096


class LocalProcess:
    """A launcher in a subprocess of our own, in its own session and a temporary folder."""

    def __init__(self, process: asyncio.subprocess.Process, folder: str) -> None:
        self.folder = folder
        self._process = process
        self._output: asyncio.Queue[Output | None] = asyncio.Queue()
        self._open_streams = 2
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._forward("stdout", process.stdout)),
            asyncio.create_task(self._forward("stderr", process.stderr)),
        ]

    async def _forward(self, name: StreamName, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_READ_SIZE):
                self._output.put_nowait(Output(name, data))
        finally:
            self._output.put_nowait(None)

    def alive(self) -> bool:
        return self._process.returncode is None

    async def begin(self, header: bytes) -> None:
        await self.write(header)

    async def read(self) -> Output | None:
        while self._open_streams:
            item = await self._output.get()
            if item is not None:
                return item
            self._open_streams -= 1
        return None

    async def write(self, data: bytes) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(data)
        await self._process.stdin.drain()

    async def close_stdin(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()

    async def signal(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signals.Signals[name])

    async def wait(self) -> Exit:
        code = await self._process.wait()
        if code < 0:
            return Exit(None, signals.Signals(-code).name)
        return Exit(code, None)

    async def remove(self, ended: bool = False) -> None:
        await self.signal("SIGKILL")
        await self._process.wait()
        for reader in self._readers:
            reader.cancel()
        shutil.rmtree(self.folder, ignore_errors=True)


class LocalBackend(Backend):
    name = "local"

    async def open(self) -> None:
        log.warning(
            "EXECSTREAM_BACKEND=local: programs run as plain processes of this user, "
            "with no isolation at all. This is NOT a sandbox: never expose it to anyone."
        )
        self.warm.start()

    async def close(self) -> None:
        await self.warm.close()

    def header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
        artifact: bytes = b"",
        key: str = "",
    ) -> bytes:
        assert isinstance(process, LocalProcess)
        folder = process.folder
        return header(language, code, wall_time, folder, str(LAUNCHERS), files, artifact, key)

    def compile_header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
    ) -> bytes:
        assert isinstance(process, LocalProcess)
        return compile_header(language, code, wall_time, process.folder, str(LAUNCHERS), files)

    async def prepare(self, language: Language, background: bool = False) -> LocalProcess:
        folder = tempfile.mkdtemp(prefix="execstream-")
        argv = [arg.format(launchers=LAUNCHERS, dir=folder) for arg in language.launcher]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=folder,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": folder,
                "LANG": "C.UTF-8",
            },
            start_new_session=True,  # its own process group, so signals reach its children too
            preexec_fn=_rlimits(self.limits),
        )
        return LocalProcess(process, folder)


def _rlimits(limits: Limits):  # type: ignore[no-untyped-def]
    """Best-effort resource limits for the child; they do not make it safe."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply
