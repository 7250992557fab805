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

from launchkit import read_header, start, write_files

LAUNCHERS = os.path.dirname(os.path.abspath(__file__))
MPL_CACHE = os.path.join(LAUNCHERS, "mpl-cache")
# Our matplotlib backend lives beside this file; programs import matplotlib from anywhere.
sys.path.append(LAUNCHERS)


READY = b"\x06"
"""Written once preloading is done; the server strips it (sandbox/docker.py)."""


def _baseline() -> str:
    """Our CPU time and resident set now, which init subtracts from the usage figures."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as statm:
        rss_kb = int(statm.read().split()[1]) * (os.sysconf("SC_PAGESIZE") // 1024)
    return f" base {usage.ru_utime + usage.ru_stime:.4f} {rss_kb}"


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
    # The first compile() of a process is slow; pay for it while we wait, not on Run. The
    # same for the header's parsing and our baseline: under gVisor the first touch of each
    # page of their code traps.
    compile("pass", "<warm-up>", "exec")
    json.loads('{"file": "/tmp/main.py", "code": "", "wall_time": 1.5}')
    _baseline()
    if os.environ.pop("EXECSTREAM_PRELOAD", "") == "1":
        _preload()
        os.write(1, READY)  # the server hands this container out only now
    header = read_header()
    _plots(header.get("key") or "")
    path = header["file"]
    write_files(header)

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv = [path]
    sys.path[0] = os.path.dirname(path)

    # Last before the program: init passes signals on from here (earlier ones were held),
    # so a Stop pressed at once interrupts the program, not this launcher.
    start(header["wall_time"], _baseline())
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
