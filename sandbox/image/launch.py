"""Start a Python program inside an already running interpreter.

The container starts this launcher before the program is known (a warm container). The
server then writes a header to stdin: one line with a byte count, then that many bytes of
JSON ({"file", "code", "run", "wall_time"}). The launcher reads exactly those bytes and no
more, so everything after them is the program's own stdin, untouched. It tells the
container's init the run's wall time (its watchdog), then runs the code as
``python3 -u FILE`` would: as ``__main__``, with ``sys.argv == [FILE]``, the file's folder
first on ``sys.path``, tracebacks naming the file, and the same exit status.
"""

import builtins
import json
import os
import signal
import sys
import types


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


def _start_watchdog(wall_time: float) -> None:
    """Arm init's run deadline: it reads the wall time once, from the pipe it gave us.

    The pipe is closed before the program starts, so the program cannot move the deadline.
    Outside a container (the local backend) there is no such pipe.
    """
    fd = os.environ.pop("EXECSTREAM_START_FD", None)
    if fd is None:
        return
    os.write(int(fd), repr(float(wall_time)).encode())
    os.close(int(fd))


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
    header = _read_header()
    _start_watchdog(header["wall_time"])
    path = header["file"]
    with open(path, "w", encoding="utf-8") as f:
        f.write(header["code"])

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv = [path]
    sys.path[0] = os.path.dirname(path)

    try:
        exec(compile(header["code"], path, "exec", dont_inherit=True), module.__dict__)
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        _report(exc)
        # Like the interpreter: die by SIGINT so the parent sees the signal, not a code.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException as exc:
        _report(exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
