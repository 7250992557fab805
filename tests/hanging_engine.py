"""A Docker engine that hangs on demand: a unix-socket proxy in front of the real one.

It passes bytes through both ways, except a request whose first line contains one of the
fragments in ``hang`` (``"/containers/create"``, ``"/start"``): that request is never sent on
and never answered, as an engine stuck on it would do. It runs its own event loop in a
thread, so it keeps serving while a test blocks (``ServerProcess.start`` does).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

ENGINE = "/var/run/docker.sock"


class HangingEngine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.hang: set[str] = set()
        self.hung = 0
        """How many requests were held so far."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> HangingEngine:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._serve, path=str(self.path)), self._loop
        ).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        engine_in, engine_out = await asyncio.open_unix_connection(ENGINE)
        try:
            await asyncio.gather(
                self._requests(client_in, engine_out), self._pipe(engine_in, client_out)
            )
        except (asyncio.CancelledError, ConnectionError):
            pass  # stopped, or one side went away: close both
        finally:
            client_out.close()
            engine_out.close()

    async def _requests(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Client to engine. aiohttp sends one request at a time on a connection, so a chunk
        that starts with a method starts a request."""
        while data := await source.read(65536):
            first_line = data.split(b"\r\n", 1)[0].decode("latin-1")
            if first_line.startswith("POST ") and any(h in first_line for h in self.hang):
                self.hung += 1
                await asyncio.Event().wait()  # never forwarded, never answered
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
