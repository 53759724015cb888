"""The receiver: Debian's nginx answering 204 on 127.0.0.1, logging `$msec` and the delivery id."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.services import free_port, wait_for_port

INSTALL_COMMAND = "apt-get update && apt-get install -y nginx-light"
NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")

# One worker process: on 2 cores a second one only competes with the pipeline for CPU.
# The log is buffered, so nginx writes it at most every 100 ms; `$msec` is taken when the
# request ends, so the buffering delays no timestamp.
_CONFIG = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    client_body_buffer_size 128k;
    log_format delivery '$msec $http_x_sol_delivery';
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        keepalive_timeout 75s;
        access_log {prefix}/access.log delivery buffer=64k flush=100ms;
        location / {{
            return 204;
        }}
    }}
}}
"""


def find_nginx(install: bool = True) -> str:
    """Return the path of the nginx binary, installing Debian's `nginx-light` when missing.

    Args:
        install: run apt-get when nginx is missing and this process is root.

    Raises:
        RuntimeError: nginx is missing and could not be installed; the message says what
            to run.
    """
    found = shutil.which("nginx") or next((p for p in NGINX_PATHS if os.path.exists(p)), None)
    if found is not None:
        return found
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"nginx not found; install it as root: {INSTALL_COMMAND}")

    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "nginx-light"]):
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            command, env=environment, capture_output=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed with code {result.returncode}; "
                f"install nginx by hand: {INSTALL_COMMAND}"
            )
    found = shutil.which("nginx") or next((p for p in NGINX_PATHS if os.path.exists(p)), None)
    if found is None:
        raise RuntimeError(f"nginx still not found after apt-get; run: {INSTALL_COMMAND}")
    return found


@dataclass
class AccessLog:
    """Reads the receiver's access log incrementally: one `(msec, delivery_id)` per request."""

    path: Path
    _offset: int = 0
    _partial: bytes = b""

    def read_new(self) -> list[tuple[float, str]]:
        """Return the requests logged since the previous call, in log order."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        entries: list[tuple[float, str]] = []
        for line in lines:
            parts = line.split(b" ", 1)
            if len(parts) == 2:
                entries.append((float(parts[0]), parts[1].decode()))
        return entries


@dataclass
class Nginx:
    """An nginx master and worker with a config and prefix of their own in `prefix`."""

    process: subprocess.Popen[bytes]
    port: int
    prefix: Path
    log: AccessLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = AccessLog(self.prefix / "access.log")

    @classmethod
    def start(cls, prefix: Path) -> Nginx:
        """Write the config into `prefix` and start nginx on a free port.

        Raises:
            RuntimeError: nginx is missing, or it did not start listening.
        """
        binary = find_nginx()
        prefix.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = prefix / "nginx.conf"
        config.write_text(_CONFIG.format(prefix=prefix, port=port))
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process=process, port=port, prefix=prefix)
        wait_for_port(port, process, "nginx")
        return server

    @property
    def url(self) -> str:
        """The webhook URL that the benchmark's integration points at."""
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        """Stop nginx (SIGTERM is its fast shutdown) and wait for it to exit."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
