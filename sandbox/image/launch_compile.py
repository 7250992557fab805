"""Compile a program in a compile container and send back what the run needs.

A warm compile container starts this launcher before the program is known; meanwhile it puts
the image's prepared Go build cache on the tmpfs. The server then writes a header to stdin
(a line with a byte count, then that many bytes of JSON: {"file", "code", "files",
"compile", "out", "wall_time"}). The launcher writes the entry file and the other files,
arms init's deadline with the compile wall time, and runs the ``compile`` command with no
stdin. The compiler's messages (its stdout folded into its stderr) go to our stderr. When it
succeeds, the folder ``out`` is sent as an uncompressed tar on our stdout, the artifact the
run container unpacks, after a line "<tar bytes> <message bytes>": the server then knows the
build is complete (every message and the whole tar arrived) without waiting for this
container to end. Our exit status is the compiler's.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile

GO_CACHE = "/opt/execstream/gocache"


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
    """Arm init's deadline through the pipe it gave us (none outside a container)."""
    fd = os.environ.pop("EXECSTREAM_START_FD", None)
    if fd is None:
        return
    os.write(int(fd), repr(float(wall_time)).encode())
    os.close(int(fd))


def _write(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def _warm_go_cache() -> None:
    """Go's build cache of the image's standard library: a build that finds it skips ~1 s."""
    home = os.environ.get("HOME", "/tmp")
    if os.path.isdir(GO_CACHE):
        shutil.copytree(GO_CACHE, os.path.join(home, ".cache", "go-build"), dirs_exist_ok=True)


def main() -> None:
    _warm_go_cache()
    header = _read_header()
    folder = os.path.dirname(header["file"])
    _write(header["file"], header["code"])
    # The server checked the names: relative, no "..", from a safe set of characters.
    for extra in header.get("files") or ():
        _write(os.path.join(folder, extra["name"]), extra["content"])
    os.makedirs(header["out"], exist_ok=True)
    _start_watchdog(header["wall_time"])
    os.chdir(folder)
    argv = header["compile"]
    try:
        compiler = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        print(f"cannot run {argv[0]}: {exc}", file=sys.stderr)
        sys.exit(127)
    assert compiler.stdout is not None
    said = _relay(compiler.stdout.fileno())
    code = compiler.wait()
    if code < 0:  # died of a signal: die of it too, so the server sees the signal
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    if code != 0:
        sys.exit(code)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(header["out"], arcname=".")
    data = archive.getvalue()
    _write_all(1, b"%d %d\n" % (len(data), said) + data)


def _relay(fd: int) -> int:
    """Copy the compiler's messages to our stderr as they come; how many bytes they were."""
    said = 0
    while chunk := os.read(fd, 65536):
        _write_all(2, chunk)
        said += len(chunk)
    return said


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    main()
