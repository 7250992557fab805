"""The Docker backend: one fresh, locked-down container per run, driven through aiodocker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import ssl
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.stream import Stream

from sandbox.backend import Backend, compile_header, header
from sandbox.container import (
    FOLDER,
    IDLE_BYTES,
    LABEL,
    LAUNCHERS,
    LINGER_SECONDS,
    OWNER_LABEL,
    PRELOAD_BYTES,
    READY,
    Runtime,
    RuntimeChoice,
    choose_runtime,
    container_config,
    labels,
    new_owner_id,
)
from sandbox.errors import BackendUnavailable, RuntimeMissing
from sandbox.files import SourceFile
from sandbox.gate import Gate
from sandbox.languages import LANGUAGES, Language, is_compiler
from sandbox.model import Exit, Limits, Output, Process
from sandbox.remover import ENGINE_ERRORS, REMOVE_TIMEOUT, Remover, create_container, describe
from sandbox.verdict import exit_from_code

log = logging.getLogger(__name__)

OOM_RECHECK_SECONDS = (0.1, 0.2, 0.4)
"""Pauses before asking again whether an unexplained SIGKILL was the engine's OOM killer."""
PRELOAD_TIMEOUT = 60.0
"""Seconds a warm Python launcher may take to import matplotlib (about 3 s at 0.5 CPU under
gVisor, more on a busy engine) before its container is given up."""
PRELOAD_CONCURRENCY = 1
"""Warm Python containers importing matplotlib at once (a core's share each, at 0.5 CPU)."""


class DockerProcess:
    """A started container whose launcher waits for its program on stdin.

    Every call to the engine that a run waits for is bounded by ``timeout``: an engine that
    hangs makes the call fail, never the run hang. ``lost`` is set when the engine is found
    down (sandbox/engines.py): the program's end can no longer be seen, so the run ends.
    """

    folder = FOLDER

    def __init__(
        self,
        container: DockerContainer,
        stream: Stream,
        remover: Remover,
        timeout: float,
        early: Output | None = None,
        lost: asyncio.Event | None = None,
        report_key: str = "",
        lingers: bool = False,
    ) -> None:
        self.container = container
        self._lost = lost or asyncio.Event()
        self.report_key = report_key
        """Keys init's usage frame: only init, and we, know it."""
        self.end_key = report_key if lingers else ""
        """Keys init's end frame on stdout, when it reports the end in-band and lingers."""
        self._stream = stream
        self._early = early
        self._remover = remover
        self._timeout = timeout
        self._removed = False
        self._killed = False
        """We sent SIGKILL (a Stop, the wall time) or removed it: its 137 is ours."""

    @property
    def id(self) -> str:
        return self.container.id

    def alive(self) -> bool:
        if self._lost.is_set():
            return False
        # The engine closes the attach connection when the container ends.
        response = self._stream._resp
        transport = response.connection.transport if response and response.connection else None
        return transport is not None and not transport.is_closing()

    async def begin(self, header: bytes) -> None:
        # A warm container may have died while it waited; writing to it would be lost.
        if not self.alive():
            raise ConnectionError("the container's stdin is closed")
        self._remover.started()
        async with asyncio.timeout(self._timeout):
            await self._stream.write_in(header)

    async def read(self) -> Output | None:
        if self._early is not None:
            early, self._early = self._early, None
            return early
        message = await self._stream.read_out()
        if message is None:
            return None
        return Output("stderr" if message.stream == 2 else "stdout", message.data)

    async def write(self, data: bytes) -> None:
        await self._stream.write_in(data)

    async def close_stdin(self) -> None:
        # aiodocker's Stream.close() ends both directions; we only end ours, so output goes on.
        response = self._stream._resp
        transport = response.connection.transport if response and response.connection else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    async def signal(self, name: str) -> None:
        self._killed = self._killed or name == "SIGKILL"
        try:
            async with asyncio.timeout(self._timeout):
                await self.container.kill(signal=name)
        except aiodocker.DockerError as exc:
            if exc.status != 409:  # 409: it is not running any more, which is fine
                raise

    async def wait(self) -> Exit:
        """The program's exit; ``BackendUnavailable`` when the engine broke or was lost."""
        try:
            await self._unless_lost(self.container.wait())
            state = await self._state()
            # The engine hears of an out-of-memory kill apart from the exit, and may hear of
            # it after: a SIGKILL nobody sent is asked about again before it is called
            # anything else (ruby and rust memory hogs read as plain errors under load).
            for pause in OOM_RECHECK_SECONDS:
                if state.get("OOMKilled") or state["ExitCode"] != 137 or self._killed:
                    break
                await asyncio.sleep(pause)
                state = await self._state()
        except ENGINE_ERRORS as exc:
            raise BackendUnavailable(f"lost the engine: {describe(exc)}") from exc
        return exit_from_code(state["ExitCode"], state.get("OOMKilled", False))

    async def _state(self) -> dict[str, Any]:
        async with asyncio.timeout(self._timeout):
            return (await self.container.show())["State"]  # type: ignore[no-any-return]

    async def _unless_lost(self, work: Awaitable[Any]) -> None:
        waiting = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({waiting, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not waiting.done():
                waiting.cancel()
        if not waiting.done():
            raise BackendUnavailable("lost the engine: it stopped answering")
        waiting.result()

    async def launcher_ready(self) -> None:
        """Wait for the launcher's own ready byte (a preloading launcher sends it once its
        imports are done), after init's."""
        if self._early is None:
            self._early = await wait_ready(self._stream)
            return
        if not self._early.data.startswith(READY):
            raise ConnectionError("the launcher wrote before it was ready")
        rest = self._early.data[len(READY) :]
        self._early = Output("stdout", rest) if rest else None

    async def remove(self, ended: bool = False) -> None:
        """``ended``: its init reported the end and lingers with nothing alive, so the
        container goes later, when the engine has time (a burst's starts come first)."""
        if self._removed:
            return
        self._removed = self._killed = True
        with contextlib.suppress(Exception):
            await self._stream.close()
        if ended and self.end_key:
            self._remover.remove_later(self.container)
            return
        await self._remover.remove(self.container)


async def wait_ready(stream: Stream) -> Output | None:
    """Wait for init's ready byte (or a preloading launcher's, which follows it), the first
    of stdout: until init has set its signals up,
    the kernel drops signals sent to it, so a Stop sent at once would be lost. Whatever
    output came with the byte is returned, for the program's reader."""
    message = await stream.read_out()
    if message is None or message.stream != 1 or not message.data.startswith(READY):
        raise ConnectionError("the sandbox's init did not report ready")
    rest = message.data[len(READY) :]
    return Output("stdout", rest) if rest else None


class DockerBackend(Backend):
    name = "docker"

    def __init__(
        self,
        limits: Limits,
        image: str,
        docker_url: str | None = None,
        pool_size: int = 0,
        owner: str | None = None,
        idle_seconds: float = 600.0,
        engine_timeout: float = 5.0,
        runtime: RuntimeChoice = "auto",
        pool_max: int | None = None,
        pool_memory_bytes: int | None = None,
        pool_shrink_seconds: float = 60.0,
        engine_concurrency: int = 4,
        compile_limits: Limits | None = None,
        preload: bool = False,
    ) -> None:
        # A warm container is handed out only while a tenth of its idle time (a second at
        # least) is left: its init ends it at ``idle_seconds`` if no program came by then.
        super().__init__(
            limits,
            pool_size,
            idle_seconds - max(1.0, idle_seconds / 10),
            pool_max,
            pool_memory_bytes,
            pool_shrink_seconds,
            compile_limits,
            preload,
        )
        # Cold starts and pool fills, together: past a few at once the engine only gets
        # slower at each (measured in bench/results/burst.md).
        self.engine = Gate(engine_concurrency)
        self.image = image
        self.wanted_runtime: RuntimeChoice = runtime
        self.runtime: Runtime | None = None  # chosen by open()
        self.owner = owner or new_owner_id()
        self.idle_seconds = idle_seconds
        # Importing matplotlib costs a warm container about a second of CPU: a pool refilling
        # after a burst of 100 ran 100 imports at once, and the burst's own runs waited for
        # the CPU (first output p95 18 s). One import at a time keeps the rest for runs.
        self._preloading = asyncio.Semaphore(PRELOAD_CONCURRENCY)
        self.engine_timeout = engine_timeout
        # A removal is off every run's path (its result is out before), and a busy engine
        # takes seconds to tear a container down: bounded loosely, it is slow, not failed.
        self._remover = Remover(max(engine_timeout, REMOVE_TIMEOUT), self.engine)
        self.url = docker_url
        """The engine's URL as configured (None: Docker's default); for the log only."""
        self._docker: aiodocker.Docker | None = None
        self.cpus = 1
        """The engine's CPUs, as it reports them (for placement over several engines)."""
        self.lost = asyncio.Event()
        """Set while the engine is known down: the runs and warm containers made before
        end (their ends can no longer be seen); ``found`` starts afresh."""

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            raise BackendUnavailable("the Docker backend is not open")
        return self._docker

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise BackendUnavailable("the Docker backend is not open")
        return self.runtime

    def found(self) -> None:
        """The engine answers again after it was lost: what is made now is watched anew."""
        self.lost = asyncio.Event()

    async def open(self) -> None:
        try:
            self._docker = _client(self.url)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise BackendUnavailable(f"cannot connect to the Docker engine: {exc}") from exc
        try:
            async with asyncio.timeout(self.engine_timeout):
                await self.docker.version()
                info = await self.docker.system.info()
        except ENGINE_ERRORS as exc:
            await self.close()
            raise BackendUnavailable(f"cannot reach the Docker engine: {describe(exc)}") from exc
        self.cpus = int(info.get("NCPU") or 1)
        self._fit_compile_cpus(info.get("NCPU"))
        try:
            self.runtime = choose_runtime(self.wanted_runtime, info.get("Runtimes") or {})
        except RuntimeMissing:
            await self.close()
            raise
        try:
            async with asyncio.timeout(self.engine_timeout):
                await self.docker.images.inspect(self.image)
        except ENGINE_ERRORS as exc:
            await self.close()
            raise BackendUnavailable(
                f"executor image {self.image!r} is missing; build it with scripts/ensure-image.sh"
            ) from exc
        try:
            self.versions = await self._read_versions()
        except BaseException:
            await self.close()
            raise
        self.warm.start()

    def _fit_compile_cpus(self, host_cpus: object) -> None:
        """The engine refuses a CPU share beyond its host's cores: the compile share is
        capped there (the run's share is the operator's to get right, and fails loudly)."""
        if isinstance(host_cpus, int) and 0 < host_cpus < self.compile_limits.cpus:
            log.info("compile CPU share capped at the engine's %d cores", host_cpus)
            self.compile_limits = dataclasses.replace(self.compile_limits, cpus=float(host_cpus))

    async def close(self) -> None:
        await self.warm.close()
        await self._remover.close()
        if self._docker is not None:
            connector = self._docker.connector
            await self._docker.close()
            await connector.close()  # ours, when we made it: aiodocker leaves it open
            self._docker = None

    async def health(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.engine_timeout):
                await self.docker.version()
        except (BackendUnavailable, *ENGINE_ERRORS) as exc:
            return {"backend": self.name, "ok": False, "error": describe(exc)}
        return {"backend": self.name, "ok": True, "image": self.image, "runtime": self.runtime}

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
        return header(language, code, wall_time, FOLDER, LAUNCHERS, files, artifact, key)

    def compile_header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
    ) -> bytes:
        return compile_header(language, code, wall_time, FOLDER, LAUNCHERS, files)

    def idle_bytes(self, language: Language) -> int:
        launcher = next(
            (lang for lang in LANGUAGES.values() if lang.launcher == language.launcher), language
        )
        idle = IDLE_BYTES.get((self._runtime(), launcher.id), 0)
        if language.preloaded:
            idle += PRELOAD_BYTES[self._runtime()]
        return idle

    async def prepare(self, language: Language, background: bool = False) -> DockerProcess:
        """Create, attach and start a container, each step bounded by ``engine_timeout``,
        once the engine gate lets us (the wait for it is not bounded: a burst queues).

        Only the pool makes ``preloaded`` containers (a cold run starts a plain one, see
        ``Backend._ready``: it would wait for the import). One joins the pool once its
        launcher says it is done, so no run waits for an import either (a pool refilling
        after a quick series of runs handed them out half-ready: first outputs of 300 to
        500 ms)."""
        if not language.preloaded:
            async with self.engine.hold(background):
                return await self._prepare(language)
        async with self._preloading:
            async with self.engine.hold(background):
                process = await self._prepare(language)
            # Outside the gate: the import is the container's work, not the engine's.
            await self._launcher_ready(process)
        return process

    async def _launcher_ready(self, process: DockerProcess) -> None:
        try:
            async with asyncio.timeout(PRELOAD_TIMEOUT):
                await process.launcher_ready()
        except BaseException as exc:  # cancelled too (the pool closing): never left behind
            await asyncio.shield(process.remove())
            if isinstance(exc, (*ENGINE_ERRORS, ConnectionError)):
                raise BackendUnavailable(f"the launcher did not preload: {describe(exc)}") from exc
            raise

    async def _prepare(self, language: Language) -> DockerProcess:
        # A compile container's end is its build on stdout (sandbox/build.py): no end frame.
        linger = 0 if is_compiler(language) else LINGER_SECONDS
        config = container_config(
            self.image,
            language,
            self.limits_for(language),
            self.owner,
            self._runtime(),
            self.idle_seconds,
            report_key := secrets.token_hex(16),
            linger,
        )
        try:
            async with asyncio.timeout(self.engine_timeout):
                container = await create_container(self.docker, config, self._remover)
        except ENGINE_ERRORS as exc:
            raise BackendUnavailable(f"cannot create a container: {describe(exc)}") from exc
        stream = container.attach(stdin=True, stdout=True, stderr=True)
        try:
            # Attach before start, so not one byte of output is missed.
            async with asyncio.timeout(self.engine_timeout):
                await stream.__aenter__()
            async with asyncio.timeout(self.engine_timeout):
                await container.start()
            async with asyncio.timeout(self.engine_timeout):
                early = await wait_ready(stream)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await stream.close()
            await asyncio.shield(self._remover.remove(container))
            if isinstance(exc, ENGINE_ERRORS):
                raise BackendUnavailable(f"cannot start a container: {describe(exc)}") from exc
            raise
        return DockerProcess(
            container,
            stream,
            self._remover,
            self.engine_timeout,
            early,
            self.lost,
            report_key,
            lingers=bool(linger),
        )

    def finishing(self) -> int:
        return self._remover.finishing

    async def owners(self) -> Counter[str]:
        """How many managed containers each owner (an instance id) has on the engine."""
        async with asyncio.timeout(self.engine_timeout):  # the sweep must not hang with it
            containers = await self.docker.containers.list(
                all=True, filters={"label": [f"{LABEL}=true"]}
            )
        return Counter(c._container.get("Labels", {}).get(OWNER_LABEL, "") for c in containers)

    async def remove_owned_by(self, owners: Iterable[str]) -> int:
        """Remove every managed container of the given owners; how many were removed."""
        removed = 0
        for owner in set(owners):
            async with asyncio.timeout(self.engine_timeout):
                containers = await self.docker.containers.list(
                    all=True, filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"]}
                )
            for container in containers:
                removed += await self._remover.remove(container)
        return removed

    async def _read_versions(self) -> dict[str, str]:
        """The runtime versions recorded in the image at build time."""
        config = {"Image": self.image, "Labels": labels(self.owner)}
        try:
            async with asyncio.timeout(self.engine_timeout):
                container = await create_container(self.docker, config, self._remover)
        except ENGINE_ERRORS as exc:
            raise BackendUnavailable(f"cannot create a container: {describe(exc)}") from exc
        try:
            async with asyncio.timeout(self.engine_timeout):
                archive = await container.get_archive(f"{LAUNCHERS}/versions.json")
            member = archive.extractfile("versions.json")
            versions = json.loads(member.read()) if member else {}
        except (*ENGINE_ERRORS, ValueError) as exc:
            log.warning("could not read runtime versions from the image: %s", describe(exc))
            versions = {}
        finally:
            await self._remover.remove(container)
        return {lang: str(versions.get(lang, LANGUAGES[lang].version)) for lang in LANGUAGES}


def _client(url: str | None) -> aiodocker.Docker:
    """A client with no cap on connections: each run holds two (attach and wait) for its
    whole life, and aiohttp's default cap of 100 would make runs queue."""
    url = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if url.startswith("unix://"):
        connector = aiohttp.UnixConnector(path=url.removeprefix("unix://"), limit=0)
        # With a connector of ours, the URL only names the host in request URLs.
        return aiodocker.Docker(url="unix://localhost", connector=connector)
    scheme, _, address = url.partition("://")
    if scheme not in ("tcp", "http", "https"):
        return aiodocker.Docker(url=url)  # SSH, pipes: aiodocker's own connector
    context = tls_context()
    tcp = aiohttp.TCPConnector(limit=0, ssl=context or True)
    secure = context is not None or scheme == "https"
    return aiodocker.Docker(url=f"{'https' if secure else 'http'}://{address}", connector=tcp)


def tls_context() -> ssl.SSLContext | None:
    """Docker's own convention for TCP engines: with ``DOCKER_TLS_VERIFY`` set, the engine's
    certificate is checked against ``ca.pem`` and ours (``cert.pem``, ``key.pem``) is shown,
    all in ``DOCKER_CERT_PATH`` (``~/.docker`` by default); None when it is not set."""
    if os.environ.get("DOCKER_TLS_VERIFY", "") in ("", "0"):
        return None
    folder = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    context = ssl.create_default_context(cafile=folder / "ca.pem")
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context
