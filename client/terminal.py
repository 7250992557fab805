"""``execstream run FILE``: run a local file on a server, wired to this terminal.

The program's output is written as it comes, what is typed (or piped) goes to its stdin, and
Ctrl-C reaches it as ``SIGINT`` (a second one as ``SIGKILL``). The exit code is the
program's, as a shell would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import concurrent.futures
import contextlib
import getpass
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from client.errors import ClientError, ConnectionLost
from client.rest import languages, login
from client.result import Event
from client.ws import ExecClient
from sandbox import Status
from server.protocol import ExitMessage, LimitMessage, OutputMessage, Queued, SignalName, Started

DEFAULT_SERVER = "http://127.0.0.1:8000"
TIMED_OUT = 124  # as coreutils' timeout
INTERRUPTED = 128 + signal.SIGINT

# Node's module flavours: the server lists JavaScript under .js only.
_ALIASES = {".mjs": ".js", ".cjs": ".js"}
_NOTES = {
    Status.TIMEOUT: "the program ran out of time",
    Status.MEMORY_LIMIT: "the program ran out of memory",
    Status.INTERNAL_ERROR: "the server failed to run the program",
}
_READ_SIZE = 64 * 1024
# Chunks read ahead of what the server has taken: enough to keep the window full, no more
# (a 20 MB file piped in is not read into memory all at once).
_READ_AHEAD = 8

Send = Callable[[], Awaitable[None]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the program to run")
    parser.add_argument("-l", "--language", help="a language id (default: from FILE's extension)")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"default: {DEFAULT_SERVER}")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--token", help="an access token (default: $EXECSTREAM_TOKEN)")
    who.add_argument(
        "--user", help="log in as USER; the password is $EXECSTREAM_PASSWORD, or asked for"
    )
    parser.add_argument("--timeout", type=_seconds, help="a lower wall-time limit, in seconds")


async def run_file(args: argparse.Namespace) -> int:
    """Run ``args.file`` on the server; return the exit code a shell would show."""
    try:
        code = _read(args.file)
        token, password = _credentials(args)
    except KeyboardInterrupt:  # at the password prompt
        print(file=sys.stderr)
        return INTERRUPTED
    except ClientError as exc:
        return _fail(exc)

    session = _Session()
    task = asyncio.create_task(session.run(args, code, token, password))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, session.interrupt, task)
    try:
        await asyncio.wait({task})
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        task.cancel()
    if task.cancelled():
        return INTERRUPTED
    try:
        return task.result()
    except ClientError as exc:
        return _fail(exc)
    except BrokenPipeError:  # the reader of our output has gone (`| head`): stop quietly
        # Python flushes stdout once more at exit; that flush must not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def guess_language(file: str, languages: Iterable[Mapping[str, Any]]) -> str | None:
    """The id of the language whose extension ``file`` has, if the server has one."""
    extension = Path(file).suffix.lower()
    extension = _ALIASES.get(extension, extension)
    return next((lang["id"] for lang in languages if lang["extension"] == extension), None)


def exit_status(exit: ExitMessage) -> int:
    """The exit code a shell would show: 124 for a timeout, 128+N for death by signal N."""
    if exit.status is Status.TIMEOUT:
        return TIMED_OUT
    if exit.exit_code is not None:
        return exit.exit_code
    if exit.signal is not None and exit.signal in signal.Signals.__members__:
        return 128 + signal.Signals[exit.signal]
    return 1


class _Session:
    """One run wired to this terminal: output out, typed input in, Ctrl-C as signals."""

    def __init__(self) -> None:
        # Input in order, then its end. Signals do not go through it: they never wait for
        # input the program has not read yet.
        self.outbox: asyncio.Queue[Send] = asyncio.Queue(_READ_AHEAD)
        self.client: ExecClient | None = None
        """Set once the program has started: from then on Ctrl-C is a signal to it."""
        self.interrupts = 0
        self._signals: set[asyncio.Task[None]] = set()

    async def run(
        self, args: argparse.Namespace, code: str, token: str | None, password: str | None
    ) -> int:
        if password is not None:
            token = await login(args.server, args.user, password)
        language = args.language or await _guess(args.server, token, args.file)
        async with ExecClient(args.server, token) as client:
            forwarder = asyncio.create_task(self._forward())
            try:
                result = await client.run(
                    language, code, timeout=args.timeout, on_event=partial(self._show, client)
                )
            finally:
                forwarder.cancel()
        if result.status in _NOTES:
            _write(sys.stderr, f"execstream: {_NOTES[result.status]}\n")
        return exit_status(result.exit)

    def interrupt(self, task: asyncio.Task[int]) -> None:
        """Ctrl-C: SIGINT, then SIGKILL; before the program starts, or a third time, give up."""
        if self.client is None or self.interrupts == 2:
            task.cancel()
            return
        name: SignalName = "SIGKILL" if self.interrupts else "SIGINT"
        self.interrupts += 1
        sending = asyncio.create_task(self._signal(self.client, name))
        self._signals.add(sending)
        sending.add_done_callback(self._signals.discard)

    @staticmethod
    async def _signal(client: ExecClient, name: SignalName) -> None:
        with contextlib.suppress(ConnectionLost):  # the run's to report
            await client.send_signal(name)

    def _show(self, client: ExecClient, event: Event) -> None:
        if isinstance(event, Started):
            self.client = client
            _read_stdin(asyncio.get_running_loop(), self.outbox, client)
        elif isinstance(event, OutputMessage):
            _write(sys.stdout if event.stream == "stdout" else sys.stderr, event.data)
        elif isinstance(event, LimitMessage):
            _write(sys.stderr, f"execstream: {event.message}\n")
        elif isinstance(event, Queued):
            _write(sys.stderr, f"execstream: waiting, {event.position - 1} ahead of you\n")

    async def _forward(self) -> None:
        """Send typed input and signals in order. A lost connection is the run's to report."""
        try:
            while True:
                send = await self.outbox.get()
                await send()
        except ConnectionLost:
            return


def _read_stdin(
    loop: asyncio.AbstractEventLoop, outbox: asyncio.Queue[Send], client: ExecClient
) -> None:
    """Forward this process's stdin, as it is typed or piped, then its end as ``eof``.

    A thread, because blocking reads work on every kind of stdin (a terminal, a pipe, a
    file), where the event loop's readers refuse regular files. It reads no further ahead
    than the outbox holds: the program's reading paces it.
    """

    def put(send: Send) -> None:
        asyncio.run_coroutine_threadsafe(outbox.put(send), loop).result()

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(0, _READ_SIZE)
            except OSError:  # no stdin at all: as good as an empty one
                chunk = b""
            text = decoder.decode(chunk, final=not chunk)
            try:
                if text:
                    put(partial(client.send_stdin, text))
                if not chunk:
                    put(client.send_eof)
                    return
            except (RuntimeError, concurrent.futures.CancelledError):  # the run is over
                return

    threading.Thread(target=pump, name="execstream-stdin", daemon=True).start()


async def _guess(server: str, token: str | None, file: str) -> str:
    known = await languages(server, token)
    language = guess_language(file, known)
    if language is None:
        ids = ", ".join(lang["id"] for lang in known)
        message = f"cannot tell the language of {file} from its extension; pass --language ({ids})"
        raise ClientError(message, "unknown_extension")
    return language


def _read(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot read {file}: {exc.strerror}", "unreadable_file") from exc
    except UnicodeDecodeError as exc:
        raise ClientError(f"{file} is not UTF-8 text", "unreadable_file") from exc


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(token, None)``, or ``(None, password)`` to log in as ``--user``."""
    if args.user:
        return None, os.environ.get("EXECSTREAM_PASSWORD") or _ask_password(args.user)
    token = args.token or os.environ.get("EXECSTREAM_TOKEN")
    if not token:
        message = "no token: pass --token, set EXECSTREAM_TOKEN, or log in with --user NAME"
        raise ClientError(message, "no_token")
    return token, None


def _ask_password(user: str) -> str:
    # asyncio.run's own handler would only cancel the task, leaving the prompt waiting for
    # Enter; the default one interrupts it (and getpass puts the terminal's echo back).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return getpass.getpass(f"Password for {user}: ")
    finally:
        signal.signal(signal.SIGINT, previous)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return seconds


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _fail(error: ClientError) -> int:
    print(f"execstream: {error.message}", file=sys.stderr)
    return 1
