"""The Docker backend: one fresh, locked-down container per run, driven through aiodocker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal as signals
import socket
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.stream import Stream

from sandbox.backend import Backend, header
from sandbox.errors import BackendUnavailable, RuntimeMissing
from sandbox.languages import LANGUAGES, Language
from sandbox.run import Exit, Limits, Output, Process

log = logging.getLogger(__name__)

LABEL = "execstream.managed"
SERVER_LABEL = "execstream.server"
OWNER_LABEL = "execstream.owner"
"""The id of the server instance that made a container (it outlives a restart's pid)."""
FOLDER = "/tmp"
LAUNCHERS = "/opt/execstream"
USER = "10001:10001"

Runtime = Literal["runc", "runsc"]
RuntimeChoice = Literal["auto", "runc", "runsc"]
"""runc: the host kernel's namespaces; runsc: gVisor, a kernel of its own in between."""

RUNSC_TASKS = 64
"""Host tasks gVisor's own kernel (Sentry and Gofer threads) needs beside the program: the
host's pids limit counts them too (about 50 when idle, measured with Debian's runsc 2022),
so under runsc the limit is the program's share plus these, or Node.js alone would not fit."""

# The engine wraps calls that fail for reasons of its own; these are the ones we expect.
ENGINE_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


def server_id() -> str:
    """Who owns a container: this host and process, so a restart can find its orphans."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_owner_id(prefix: str | None = None) -> str:
    """A fresh instance id: ``prefix`` (the host by default), then random hex."""
    return f"{prefix or socket.gethostname()}-{uuid.uuid4().hex[:12]}"


def labels(owner: str, **extra: str) -> dict[str, str]:
    return {LABEL: "true", SERVER_LABEL: server_id(), OWNER_LABEL: owner, **extra}


def choose_runtime(wanted: RuntimeChoice, available: Mapping[str, Any]) -> Runtime:
    """The runtime to use, given those the engine lists: ``auto`` prefers gVisor."""
    if wanted == "runc":
        return "runc"
    if "runsc" in available:
        return "runsc"
    if wanted == "runsc":
        raise RuntimeMissing(
            "EXECSTREAM_RUNTIME=runsc but the Docker engine has no runsc runtime "
            f"(it lists: {', '.join(sorted(available)) or 'none'}); "
            "register gVisor with the engine (README.md, Running under gVisor) or choose auto"
        )
    log.warning(
        "the Docker engine has no runsc runtime: programs run under runc, with the host "
        "kernel as their only wall (README.md, Running under gVisor)"
    )
    return "runc"


def container_config(
    image: str, language: Language, limits: Limits, owner: str, runtime: Runtime
) -> dict[str, Any]:
    """Everything that isolates one run. Each flag here is part of the security model."""
    return {
        "Image": image,
        "Cmd": [arg.format(launchers=LAUNCHERS, dir=FOLDER) for arg in language.launcher],
        "User": USER,
        "WorkingDir": FOLDER,
        "Env": ["HOME=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"],
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,  # our end-of-file closes the program's stdin
        "Tty": False,
        "NetworkDisabled": True,
        "Labels": labels(owner, **{"execstream.language": language.id}),
        "HostConfig": {
            "Runtime": runtime,
            "NetworkMode": "none",
            "ReadonlyRootfs": True,
            "Tmpfs": {FOLDER: f"rw,nosuid,nodev,noexec,size={limits.tmp_bytes},mode=1777"},
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Memory": limits.memory_bytes,
            "MemorySwap": limits.memory_bytes,  # equal to Memory: no swap on top
            "NanoCpus": int(limits.cpus * 1e9),
            "PidsLimit": limits.pids + (RUNSC_TASKS if runtime == "runsc" else 0),
            "Ulimits": [
                {"Name": "nofile", "Soft": limits.open_files, "Hard": limits.open_files},
                {"Name": "fsize", "Soft": limits.file_bytes, "Hard": limits.file_bytes},
                {"Name": "core", "Soft": 0, "Hard": 0},
            ],
            "IpcMode": "private",
            "ShmSize": 1024 * 1024,
            "LogConfig": {"Type": "none"},  # output goes to the client, never to the disk
        },
    }


def exit_from_code(code: int, oom_killed: bool) -> Exit:
    """tini, our PID 1, exits with 128+N when the program died of signal N."""
    if code > 128:
        with contextlib.suppress(ValueError):
            return Exit(None, signals.Signals(code - 128).name, oom_killed)
    return Exit(code, None, oom_killed)


class DockerProcess:
    """A started container whose launcher waits for its program on stdin."""

    folder = FOLDER

    def __init__(self, container: DockerContainer, stream: Stream) -> None:
        self.container = container
        self._stream = stream
        self._removed = False

    @property
    def id(self) -> str:
        return self.container.id

    async def begin(self, header: bytes) -> None:
        # A warm container may have died while it waited; writing to it would be lost.
        response = self._stream._resp
        transport = response.connection.transport if response and response.connection else None
        if transport is None or transport.is_closing():
            raise ConnectionError("the container's stdin is closed")
        await self._stream.write_in(header)

    async def read(self) -> Output | None:
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
        try:
            await self.container.kill(signal=name)
        except aiodocker.DockerError as exc:
            if exc.status != 409:  # 409: it is not running any more, which is fine
                raise

    async def wait(self) -> Exit:
        await self.container.wait()
        state = (await self.container.show())["State"]
        return exit_from_code(state["ExitCode"], state.get("OOMKilled", False))

    async def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        with contextlib.suppress(Exception):
            await self._stream.close()
        await remove_container(self.container)


async def create_container(docker: aiodocker.Docker, config: dict[str, Any]) -> DockerContainer:
    """Create a container; if we are cancelled meanwhile, the engine may still make it, so
    wait for it and remove it rather than leave it behind unnamed."""
    creating = asyncio.ensure_future(docker.containers.create(config=config))
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await remove_container(await creating)
        raise


async def remove_container(container: DockerContainer) -> None:
    """Remove a container whatever state it is in; gone already is fine."""
    for attempt in range(3):
        try:
            await container.delete(force=True, v=True)
            return
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return
            if attempt == 2:
                log.error("could not remove container %s: %s", container.id[:12], exc)
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


class DockerBackend(Backend):
    name = "docker"

    def __init__(
        self,
        limits: Limits,
        image: str,
        docker_url: str | None = None,
        pool_size: int = 0,
        owner: str | None = None,
        runtime: RuntimeChoice = "auto",
    ) -> None:
        super().__init__(limits, pool_size)
        self.image = image
        self.wanted_runtime: RuntimeChoice = runtime
        self.runtime: Runtime | None = None  # chosen by open()
        self.owner = owner or new_owner_id()
        self._docker_url = docker_url
        self._docker: aiodocker.Docker | None = None

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            raise BackendUnavailable("the Docker backend is not open")
        return self._docker

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise BackendUnavailable("the Docker backend is not open")
        return self.runtime

    async def open(self) -> None:
        self._docker = _client(self._docker_url)
        try:
            await self.docker.version()
            info = await self.docker.system.info()
        except ENGINE_ERRORS as exc:
            await self.close()
            raise BackendUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        try:
            self.runtime = choose_runtime(self.wanted_runtime, info.get("Runtimes") or {})
        except RuntimeMissing:
            await self.close()
            raise
        try:
            await self.docker.images.inspect(self.image)
        except aiodocker.DockerError as exc:
            await self.close()
            raise BackendUnavailable(
                f"executor image {self.image!r} is missing; build it with scripts/ensure-image.sh"
            ) from exc
        await self.remove_orphans()
        self.versions = await self._read_versions()
        self.pool.start()

    async def close(self) -> None:
        await self.pool.close()
        await self.close_runs()
        if self._docker is not None:
            connector = self._docker.connector
            await self._docker.close()
            await connector.close()  # ours, when we made it: aiodocker leaves it open
            self._docker = None

    async def health(self) -> dict[str, Any]:
        try:
            await self.docker.version()
        except (BackendUnavailable, *ENGINE_ERRORS) as exc:
            return {"backend": self.name, "ok": False, "error": str(exc)}
        return {"backend": self.name, "ok": True, "image": self.image, "runtime": self.runtime}

    def header(self, language: Language, code: str, process: Process) -> bytes:
        return header(language, code, FOLDER, LAUNCHERS)

    async def prepare(self, language: Language) -> DockerProcess:
        try:
            container = await create_container(
                self.docker,
                container_config(self.image, language, self.limits, self.owner, self._runtime()),
            )
        except ENGINE_ERRORS as exc:
            raise BackendUnavailable(f"cannot create a container: {exc}") from exc
        try:
            # Attach before start, so not one byte of output is missed.
            stream = container.attach(stdin=True, stdout=True, stderr=True)
            await stream.__aenter__()
            await container.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await remove_container(container)
            if isinstance(exc, ENGINE_ERRORS):
                raise BackendUnavailable(f"cannot start a container: {exc}") from exc
            raise
        return DockerProcess(container, stream)

    async def remove_orphans(self) -> int:
        """Remove managed containers whose server process on this host is gone."""
        host = socket.gethostname()
        containers = await self.docker.containers.list(
            all=True, filters={"label": [f"{LABEL}=true"]}
        )
        removed = 0
        for container in containers:
            owner = container._container.get("Labels", {}).get(SERVER_LABEL, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and _alive(int(pid)):
                continue
            await remove_container(container)
            removed += 1
        if removed:
            log.warning("removed %d container(s) left behind by an earlier server", removed)
        return removed

    async def owners(self) -> Counter[str]:
        """How many managed containers each owner (an instance id) has on the engine."""
        containers = await self.docker.containers.list(
            all=True, filters={"label": [f"{LABEL}=true"]}
        )
        return Counter(c._container.get("Labels", {}).get(OWNER_LABEL, "") for c in containers)

    async def remove_owned_by(self, owners: Iterable[str]) -> int:
        """Remove every managed container of the given owners; how many were removed."""
        removed = 0
        for owner in set(owners):
            containers = await self.docker.containers.list(
                all=True, filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"]}
            )
            for container in containers:
                await remove_container(container)
                removed += 1
        return removed

    async def _read_versions(self) -> dict[str, str]:
        """The runtime versions recorded in the image at build time."""
        container = await create_container(
            self.docker,
            {"Image": self.image, "Labels": labels(self.owner)},
        )
        try:
            archive = await container.get_archive(f"{LAUNCHERS}/versions.json")
            member = archive.extractfile("versions.json")
            versions = json.loads(member.read()) if member else {}
        except (aiodocker.DockerError, ValueError) as exc:
            log.warning("could not read runtime versions from the image: %s", exc)
            versions = {}
        finally:
            await remove_container(container)
        return {lang: str(versions.get(lang, LANGUAGES[lang].version)) for lang in LANGUAGES}


def _client(url: str | None) -> aiodocker.Docker:
    """A client with no cap on connections to a local engine: each run holds two (attach and
    wait) for its whole life, and aiohttp's default cap of 100 would make runs queue."""
    url = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not url.startswith("unix://"):
        return aiodocker.Docker(url=url)  # TCP, SSH, pipes: aiodocker's own connector
    connector = aiohttp.UnixConnector(path=url.removeprefix("unix://"), limit=0)
    # With a connector of ours, the URL only names the host in request URLs.
    return aiodocker.Docker(url="unix://localhost", connector=connector)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
