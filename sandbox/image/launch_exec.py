"""Start a program by replacing this launcher with it: for languages that start fast.

The same header as ``launch.py`` arrives on stdin (a line with a byte count, then that many
bytes of JSON: {"file", "code", "files", "run", "wall_time", "artifact"}). With "artifact"
(a byte count), that many bytes follow: a tar of what a compile stage built, unpacked into
the program's folder. The launcher reads exactly those bytes, so everything after them is
the program's own stdin. It writes the entry file and any other files beside it, tells init
the run's wall time, then ``exec``s the ``run`` command: the program becomes this process,
with our stdin, stdout and stderr, and its exit status is the container's.

A ``run`` command that is a file of the folder (a built binary) cannot be executed from
there, the folder being mounted ``noexec``: it is copied into a memory file and executed
from that, which leaves the folder's ``noexec`` in place.
"""

import io
import os
import tarfile

from launchkit import read_exact, read_header, start, write_files


def _unpack(data: bytes, folder: str) -> None:
    """Unpack the compile stage's tar: regular files and folders only, inside ``folder``."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        for member in members:
            target = os.path.realpath(os.path.join(folder, member.name))
            if os.path.commonpath([target, os.path.realpath(folder)]) != os.path.realpath(folder):
                raise ValueError(f"artifact member outside the folder: {member.name}")
        tar.extractall(folder, members=members)


def _exec(run: list, folder: str) -> None:
    path = run[0]
    if not os.path.isabs(path) or os.path.dirname(path) != os.path.realpath(folder):
        os.execvp(path, run)
    fd = os.memfd_create(os.path.basename(path))
    with open(path, "rb") as binary, open(fd, "wb", closefd=False) as memory:
        memory.write(binary.read())
    os.execve(fd, run, os.environ)


def main() -> None:
    header = read_header()
    artifact = read_exact(header["artifact"]) if header.get("artifact") else b""
    folder = write_files(header)
    if artifact:
        _unpack(artifact, folder)
    # " exec": this process becomes the program, so init counts its memory from zero.
    start(header["wall_time"], " exec")
    os.chdir(folder)
    _exec(header["run"], folder)


if __name__ == "__main__":
    main()
