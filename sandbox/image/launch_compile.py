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
import os
import shutil
import signal
import subprocess
import sys
import tarfile

from launchkit import read_header, start, write_files

GO_CACHE = "/opt/execstream/gocache"


def _warm_go_cache() -> None:
    """Go's build cache of the image's standard library: a build that finds it skips ~1 s."""
    home = os.environ.get("HOME", "/tmp")
    if os.path.isdir(GO_CACHE):
        shutil.copytree(GO_CACHE, os.path.join(home, ".cache", "go-build"), dirs_exist_ok=True)


def main() -> None:
    _warm_go_cache()
    header = read_header()
    folder = write_files(header)
    os.makedirs(header["out"], exist_ok=True)
    start(header["wall_time"])
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
