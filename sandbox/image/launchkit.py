"""What the Python launchers share: the header on stdin, the program's files, and the start.

The server writes a header to the launcher's stdin: a line with a byte count, then that many
bytes of JSON. ``start`` tells init the program starts now: the run's wall time arms its
deadline, through the socket init gave us on fd 3 (sandbox/image/init.c), and init answers
with the signals that came before (a Stop pressed at once). Those are raised here, with their
default action, before the program runs: passed on by init, one could land just before the
program blocks and go unnoticed.
"""

import json
import os
import signal


def read_exact(count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = os.read(0, count - len(data))
        if not chunk:
            raise EOFError("stdin closed before the program arrived")
        data += chunk
    return data


def read_header() -> dict:
    line = b""
    while not line.endswith(b"\n"):
        line += read_exact(1)
    return json.loads(read_exact(int(line)))


def write_file(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def write_files(header: dict) -> str:
    """The entry file and the others beside it; their folder."""
    folder = os.path.dirname(header["file"])
    write_file(header["file"], header["code"])
    # The server checked the names: relative, no "..", from a safe set of characters.
    for extra in header.get("files") or ():
        write_file(os.path.join(folder, extra["name"]), extra["content"])
    return folder


def start(wall_time: float, note: str = "") -> None:
    """Arm init's deadline, then end as any signal sent before now would have ended us.

    ``note`` goes with the wall time: " base CPU RSS_KB", our usage baseline, or " exec", we
    become the program. Outside a container (the local backend) there is no socket.
    """
    fd = os.environ.pop("EXECSTREAM_START_FD", None)
    if fd is None:
        return
    os.write(int(fd), f"{float(wall_time)!r}{note} held?".encode())
    reply = b""
    while not reply.endswith(b"\n") and (chunk := os.read(int(fd), 64)):
        reply += chunk
    os.close(int(fd))
    for number in [int(n) for n in reply.split()[1:]]:
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
