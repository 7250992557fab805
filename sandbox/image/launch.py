"""Start a Python program inside an already running interpreter.

The container starts this launcher before the program is known (a warm container). The
server then writes a header to stdin: one line with a byte count, then that many bytes of
JSON ({"file", "code", "files", "run", "wall_time"}). The launcher reads exactly those bytes and no
more, so everything after them is the program's own stdin, untouched. It tells the
container's init the run's wall time (its watchdog), then runs the code as
``python3 -u FILE`` would, with the other ``files`` of the program beside it (so it imports
them): as ``__main__``, with ``sys.argv == [FILE]``, the file's folder
first on ``sys.path``, tracebacks naming the file, and the same exit status.
"""

import atexit
import builtins
import gc
import json
import os
import resource
import shutil
import signal
import sys
import types

LAUNCHERS = os.path.dirname(os.path.abspath(__file__))
MPL_CACHE = os.path.join(LAUNCHERS, "mpl-cache")
# Our matplotlib backend lives beside this file; programs import matplotlib from anywhere.
sys.path.append(LAUNCHERS)


READY = b"\x06"
"""Written once preloading is done; the server strips it (sandbox/docker.py)."""


def _read_exact(count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = os.read(0, count - len(data))
        if not chunk:
            raise EOFError("stdin closed before the program arrived")
        data += chunk
    return data


def _read_header() -> dict:
    line = b""
    while not line.endswith(b"\n"):
        line += _read_exact(1)
    return json.loads(_read_exact(int(line)))


def _start_watchdog(wall_time: float) -> list[int]:
    """Arm init's run deadline: it reads the wall time once, from the socket it gave us, and
    answers with the signals sent before the program started (init.c, pass_held).

    The socket is closed before the program starts, so the program cannot move the
    deadline. Outside a container (the local backend) there is no such socket.
    """
    fd = os.environ.pop("EXECSTREAM_START_FD", None)
    if fd is None:
        return []
    # Our CPU time and resident set now, the baseline init subtracts from the usage figures.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as statm:
        rss_kb = int(statm.read().split()[1]) * (os.sysconf("SC_PAGESIZE") // 1024)
    base = f"{float(wall_time)!r} base {usage.ru_utime + usage.ru_stime:.4f} {rss_kb} held?"
    os.write(int(fd), base.encode())
    reply = b""
    while not reply.endswith(b"\n") and (chunk := os.read(int(fd), 64)):
        reply += chunk
    os.close(int(fd))
    return [int(n) for n in reply.split()[1:]]


def _die_of(signals: list[int]) -> None:
    """A signal sent before the program started ends it before it starts, as it would have
    ended an interpreter still starting up: by the signal, at once (raised here, it cannot
    land unnoticed just before the program blocks)."""
    for number in signals:
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)


def _write(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def _plots(key: str) -> None:
    """matplotlib draws with our backend (sandbox/image/execstream_mpl.py), which sends
    figures on the side channel with the run's key; its font cache comes from the image."""
    os.environ["MPLBACKEND"] = "module://execstream_mpl"
    cache = os.path.join(os.environ.get("HOME", "/tmp"), ".cache", "matplotlib")
    if os.path.isdir(MPL_CACHE) and not os.path.exists(cache):
        shutil.copytree(MPL_CACHE, cache)
    os.environ["EXECSTREAM_PLOT_KEY"] = key


def _preload() -> None:
    """Import pyplot while we wait for the program (EXECSTREAM_PRELOAD=1): a plot's first
    image then takes a fraction of a second instead of seconds, for memory in every warm
    container (bench/plots.py measures both)."""
    _plots("")
    import execstream_mpl  # noqa: F401
    import matplotlib.pyplot  # noqa: F401

    # numpy and matplotlib leave a few hundred thousand objects that the program's first
    # full collection would walk (6 ms of a hello world's first output, measured): they
    # live as long as the process, so the collector is told to leave them alone.
    gc.collect()
    gc.freeze()


def _report(exc: BaseException) -> None:
    """Print an uncaught exception the way the interpreter does, without our own frame."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    # The hook prints the traceback the exception carries, so trim that one itself.
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


def main() -> None:
    # The first compile() of a process is slow; pay for it while we wait, not on Run.
    compile("pass", "<warm-up>", "exec")
    if os.environ.pop("EXECSTREAM_PRELOAD", "") == "1":
        _preload()
        os.write(1, READY)  # the server hands this container out only now
    header = _read_header()
    _plots(header.get("key") or "")
    path = header["file"]
    _write(path, header["code"])
    # The server checked the names: relative, no "..", from a safe set of characters.
    for extra in header.get("files") or ():
        _write(os.path.join(os.path.dirname(path), extra["name"]), extra["content"])

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv = [path]
    sys.path[0] = os.path.dirname(path)

    # Last before the program: init passes signals on from here (earlier ones were held),
    # so a Stop pressed at once interrupts the program, not this launcher.
    _die_of(_start_watchdog(header["wall_time"]))
    try:
        exec(compile(header["code"], path, "exec", dont_inherit=True), module.__dict__)
    except SystemExit as exc:
        _finish(_exit_code(exc.code))
    except KeyboardInterrupt as exc:
        _report(exc)
        # Like the interpreter: die by SIGINT so the parent sees the signal, not a code.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException as exc:
        _report(exc)
        _finish(1)
    _finish(0)


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` gives, printing a message the way the interpreter does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish(code: int) -> None:
    """End as the interpreter does (wait for threads, run atexit, flush), but skip tearing
    its modules down: with numpy and matplotlib loaded that alone costs 0.17 s of CPU,
    which the run's cpu_time would count and the student would wait for."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except KeyboardInterrupt as exc:
        _report(exc)
        code = 130
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = code or 120  # like the interpreter when it cannot flush stdout
    os._exit(code)


if __name__ == "__main__":
    main()
