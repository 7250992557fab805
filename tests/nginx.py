"""Debian's nginx as a plain process in front of execstream servers, configured from the
shipped deploy/nginx.conf, for the end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from string import Template

import httpx

from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx.conf"
NGINX = os.environ.get("EXECSTREAM_NGINX", "/usr/sbin/nginx")
DEFAULT_BODY_BYTES = "524288"


def render(upstreams: list[str], port: int, body_bytes: str = DEFAULT_BODY_BYTES) -> str:
    """deploy/nginx.conf with its variables filled, as the nginx image's envsubst does: only
    the names given are replaced; nginx's own ``$variables`` stay."""
    servers = " ".join(f"server {address};" for address in upstreams)
    return Template(TEMPLATE.read_text()).safe_substitute(
        NGINX_PORT=f"127.0.0.1:{port}",
        EXECSTREAM_UPSTREAMS=servers,
        EXECSTREAM_MAX_BODY_BYTES=body_bytes,
    )


class NginxProcess:
    """nginx on a free port of 127.0.0.1 with its files in ``folder``.

    It reaches the servers from ``source`` (another loopback address than the clients'), so
    a test can tell the proxy's address from a client's.
    """

    def __init__(self, folder: Path, upstreams: list[str], source: str = "127.0.0.2") -> None:
        self.folder = folder
        self.port = free_port()
        self.upstreams = upstreams
        self.source = source
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "error.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/code/ws"

    def config(self) -> Path:
        """The main config: process-level settings of ours around the shipped http part."""
        self.folder.mkdir(parents=True, exist_ok=True)
        site = self.folder / "execstream.conf"
        site.write_text(render(self.upstreams, self.port))
        temp = {name: self.folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        main = self.folder / "nginx.conf"
        main.write_text(
            f"pid {self.folder / 'nginx.pid'};\n"
            f"error_log {self.log} warn;\n"
            "worker_processes 1;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            f"    access_log {self.folder / 'access.log'};\n"
            f"    client_body_temp_path {temp['body']};\n"
            f"    proxy_temp_path {temp['proxy']};\n"
            f"    fastcgi_temp_path {temp['fastcgi']};\n"
            f"    uwsgi_temp_path {temp['uwsgi']};\n"
            f"    scgi_temp_path {temp['scgi']};\n"
            f"    proxy_bind {self.source};\n"
            f"    include {site};\n"
            "}\n"
        )
        return main

    def start(self, timeout: float = 10) -> NginxProcess:
        if not Path(NGINX).exists():
            raise RuntimeError(f"nginx not found at {NGINX}: run scripts/ensure-nginx.sh")
        main = self.config()
        args = [NGINX, "-p", str(self.folder), "-e", str(self.log), "-c", str(main)]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused its config:\n{check.stderr}")
        self.process = subprocess.Popen(
            [*args, "-g", "daemon off;"], stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/healthz", timeout=2)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"nginx exited at start:\n{self.log.read_text()}") from None
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer within {timeout} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
