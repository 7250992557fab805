"""execstream servers in subprocesses (the tests' ``ServerProcess``), and reading them."""

from __future__ import annotations

import resource
from pathlib import Path

from tests.server import ServerProcess


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one; children started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    """VmRSS of one process (not its children), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Server(ServerProcess):
    """A named server for the bench, with its warm pool of ``pool_size`` (0: off), running
    programs under ``runtime``."""

    def __init__(self, name: str, data_dir: Path, pool_size: int, runtime: str = "runc") -> None:
        super().__init__(
            data_dir,
            EXECSTREAM_POOL_SIZE=str(pool_size),
            EXECSTREAM_RUNTIME=runtime,
            # The idle-sessions measurement opens its 1,000 sockets as one user.
            EXECSTREAM_MAX_SOCKETS_PER_USER="10000",
        )
        self.name = name
        self.pool_size = pool_size
        self.runtime = runtime

    def token(self) -> str:
        """Register a fresh user and sign in; returns its access token."""
        return self.new_user()[1]
